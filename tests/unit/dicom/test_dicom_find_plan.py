"""What a C-FIND pushes down to the store, which PatientID it answers, and the peer settings (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from huizhen.adapters.dicom_find_service import PatientKey, plan, shown_identifier
from huizhen.adapters.dicom_peers import PeerPolicy, move_destinations
from huizhen.integration.errors import ConfigurationError
from huizhen.integration.model import HumanName, Identifier, Patient
from huizhen.mappings.dicom_query import FindQuery
from huizhen.settings import Settings


def query(level: str, **keys: str) -> FindQuery:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    return FindQuery.from_identifier(identifier)


def test_exact_keys_at_or_above_the_level_are_pushed_down() -> None:
    p = plan(query("SERIES", StudyInstanceUID="1.2\\1.3", Modality="CT", SOPInstanceUID="9.9",
                   AccessionNumber="A*", PatientID="P1", IssuerOfPatientID="FAC001"))
    f = p.filter
    assert (f.study_uids, f.modalities) == (frozenset({"1.2", "1.3"}), frozenset({"CT"}))
    assert f.sop_instance_uids is None  # an IMAGE key in a SERIES query is not a filter
    assert f.accession_numbers is None  # a wildcard is matched in memory, not in SQL
    assert p.patient == PatientKey(("P1",), "FAC001")


def test_patient_level_pushes_down_only_the_patient() -> None:
    p = plan(query("PATIENT", PatientID="P1", StudyInstanceUID="1.2", PatientName="王*"))
    assert p.filter.study_uids is None and p.patient == PatientKey(("P1",), None)
    assert plan(query("PATIENT", PatientID="P*")).patient is None


def test_study_date_range_becomes_a_wider_utc_window() -> None:
    f = plan(query("STUDY", StudyDate="20040801-20040831")).filter
    assert f.started_from == datetime(2004, 7, 31, tzinfo=UTC)
    assert f.started_until == datetime(2004, 9, 2, tzinfo=UTC)
    open_low = plan(query("STUDY", StudyDate="-20031231")).filter
    assert (open_low.started_from, open_low.started_until) == (None, datetime(2004, 1, 2, tzinfo=UTC))


def test_the_answered_patient_id_is_one_the_query_matches_preferring_the_peers_issuer() -> None:
    patient = Patient(HumanName.of("张", ("三",)), [Identifier("urn:oid:1.2", "ID9"), Identifier("FAC001", "M7"),
                                                   Identifier("FAC002", "M7")])
    assert shown_identifier(patient, query("STUDY"), "FAC002") == Identifier("FAC002", "M7")
    assert shown_identifier(patient, query("STUDY", PatientID="ID*"), "FAC002") == Identifier("urn:oid:1.2", "ID9")
    assert shown_identifier(patient, query("STUDY", PatientID="nope"), "FAC001") is None


def test_peer_policy_and_move_destinations(tmp_path: Path) -> None:
    policy = PeerPolicy.from_settings(Settings(data_dir=tmp_path, dicom_peers="CT1=FAC001, PACS = FAC002"))
    assert policy.allowed_ae_titles == ["CT1", "PACS"] and not policy.open_to_any
    assert policy.peer("PACS  ", "10.0.0.5:104").default_issuer == "FAC002"
    assert PeerPolicy.from_settings(Settings(data_dir=tmp_path)).peer("X", None).default_issuer == (
        "urn:huizhen:dicom-ae:X"
    )
    with pytest.raises(ConfigurationError):
        PeerPolicy.from_settings(Settings(env="production", data_dir=tmp_path))
    assert move_destinations("WS1=10.0.0.7:104, WS2=[::1]:11113") == {"WS1": ("10.0.0.7", 104), "WS2": ("::1", 11113)}
    with pytest.raises(ValueError, match="AE=host:port"):
        Settings(dicom_move_destinations="WS1=10.0.0.7")
