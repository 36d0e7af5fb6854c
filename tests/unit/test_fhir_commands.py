"""Mapped FHIR resources → commands: references become identifiers the engine can find."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from huizhen.adapters.fhir_codec import decode, plan
from huizhen.adapters.fhir_request import FhirRequest
from huizhen.integration.commands import (
    AddObservations,
    BindPatientAlias,
    CancelConsultation,
    Linked,
    RequestConsultation,
    UpsertEncounter,
    UpsertPatient,
    UpsertPractitioner,
)
from huizhen.integration.model import Identifier
from huizhen.mappings.codes import CodeTables
from huizhen.mappings.fhir import systems
from huizhen.mappings.fhir.commands import COMPONENT_OF, Converted, Origin, component_of, convert, logical_id_system
from huizhen.mappings.fhir.inbound import map_resource
from huizhen.mappings.fhir.outcome import InvalidResource
from huizhen.mappings.fhir.result import Mapped
from huizhen.mappings.fhir.validate import validate_resource

CST = timezone(timedelta(hours=8))
HIS = Origin("HIS1", "QSWSY", CST)
CONSULT = {("http://his.example.cn/order-code", "HZCONSULT")}
HZ_ID = "0123456789abcdef0123456789abcdef"


def converted(resource: dict[str, Any], logical_id: str | None = None) -> Converted:
    result = map_resource(validate_resource(resource), consultation_codes=CONSULT)
    assert isinstance(result, Mapped)
    return convert(result, HIS, logical_id=logical_id or resource.get("id"))


def sender(resource_type: str, value: str) -> Identifier:
    return Identifier(logical_id_system("HIS1", resource_type), value)


def observation(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "glu-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"reference": "Patient/p-1"},
        "valueQuantity": {"value": 5.6, "unit": "mmol/L", "system": systems.UCUM, "code": "mmol/L"},
        **extra,
    }


def test_a_patient_keeps_the_senders_logical_id_and_takes_the_senders_facility() -> None:
    out = converted({"resourceType": "Patient", "id": "p-1", "identifier": [{"system": "urn:mrn", "value": "M1"}],
                     "managingOrganization": {"reference": "Organization/thc"}})
    [command] = out.commands
    assert isinstance(command, Linked) and isinstance(command.command, UpsertPatient)
    upsert = command.command
    assert upsert.patient.identifiers == [Identifier("urn:mrn", "M1"), sender("Patient", "p-1")]
    assert upsert.facility_code == "QSWSY"
    [link] = command.links
    assert (link.field, link.target) == ("facility_id", "Organization")
    assert link.identifiers == (sender("Organization", "thc"),)
    assert out.target is not None and sender("Patient", "p-1") in out.target.identifiers


def test_a_put_by_huizhen_id_first_binds_that_patient_to_the_senders_name() -> None:
    out = converted({"resourceType": "Patient", "id": HZ_ID})
    assert out.commands[0] == BindPatientAlias(sender("Patient", HZ_ID), HZ_ID)
    assert isinstance(out.commands[1], UpsertPatient)


def test_an_observation_names_its_subject_and_encounter_by_identifier() -> None:
    out = converted(observation(encounter={"reference": "Encounter/v-9"}, effectiveDateTime="2024-03-01"))
    [command] = out.commands
    assert isinstance(command, Linked) and isinstance(command.command, AddObservations)
    added = command.command
    assert added.patient == (sender("Patient", "p-1"),)
    assert command.links[0].target == "Encounter" and command.links[0].identifiers == (sender("Encounter", "v-9"),)
    [glucose] = added.observations
    assert sender("Observation", "glu-1") in glucose.identifiers
    assert glucose.effective_at == datetime(2024, 3, 1, tzinfo=CST)  # a date is that day's start where it was sent


def test_components_are_kept_in_order_under_their_parent() -> None:
    panel = observation(
        valueQuantity=None,
        component=[
            {"code": {"coding": [{"system": "http://loinc.org", "code": c}]}, "valueQuantity": {"value": v}}
            for c, v in (("8480-6", 120), ("8462-4", 80))
        ],
    )
    del panel["valueQuantity"]
    [command] = converted(panel).commands
    assert isinstance(command, AddObservations)
    parent, *parts = command.observations
    assert [component_of(p) for p in parts] == [(parent.id, 0), (parent.id, 1)]
    assert component_of(parent) is None
    assert all(i.system == COMPONENT_OF for p in parts for i in p.identifiers)


def test_a_conditional_subject_is_its_identifier() -> None:
    [command] = converted(observation(subject={"reference": "Patient?identifier=urn:mrn|M1"})).commands
    assert isinstance(command, AddObservations) and command.patient == (Identifier("urn:mrn", "M1"),)


@pytest.mark.parametrize(
    ("subject", "code"),
    [({"reference": "#newborn"}, "not-supported"), ({"reference": "Group/g1"}, "not-supported"), (None, "required")],
)
def test_a_subject_huizhen_cannot_find_is_refused_naming_the_element(subject: Any, code: str) -> None:
    resource = observation(subject=subject)
    if subject is None:
        del resource["subject"]
    if subject == {"reference": "#newborn"}:
        resource["contained"] = [{"resourceType": "Patient", "id": "newborn"}]
    with pytest.raises(InvalidResource) as caught:
        converted(resource)
    [issue] = caught.value.issues
    assert (issue.code, issue.expression) == (code, ("Observation.subject",))


def test_a_consultation_request_without_identifier_is_keyed_by_its_logical_id_and_revocation_cancels() -> None:
    out = converted({
        "resourceType": "ServiceRequest", "id": "sr-1", "status": "revoked", "intent": "order",
        "code": {"coding": [{"system": "http://his.example.cn/order-code", "code": "HZCONSULT"}]},
        "subject": {"reference": "Patient/p-1"}, "requester": {"reference": "PractitionerRole/role-7"},
    })
    linked, cancel = out.commands
    assert isinstance(linked, Linked) and isinstance(linked.command, RequestConsultation)
    assert linked.command.consultation.source_order == sender("ServiceRequest", "sr-1")
    requester = linked.links[0]
    assert (requester.field, requester.identifiers) == ("requester_id", (sender("PractitionerRole", "role-7"),))
    assert cancel == CancelConsultation(sender("ServiceRequest", "sr-1"), "ServiceRequest revoked")
    assert not any("ServiceRequest.identifier" in i.expression for i in out.issues)  # the key exists now


def test_a_practitioner_role_needs_its_practitioner_and_merges_into_it() -> None:
    with pytest.raises(InvalidResource) as caught:
        converted({"resourceType": "PractitionerRole", "id": "r1"})
    assert caught.value.issues[0].expression == ("PractitionerRole.practitioner",)
    role = {"resourceType": "PractitionerRole", "id": "r1", "practitioner": {"reference": "Practitioner/d1"},
            "specialty": [{"text": "心血管内科"}]}
    [command] = converted(role).commands
    assert isinstance(command, UpsertPractitioner) and not command.create
    assert command.practitioner.identifiers == [sender("Practitioner", "d1"), sender("PractitionerRole", "r1")]
    assert command.practitioner.department == "心血管内科"


def test_bundle_entries_name_each_other_through_urn_uuid() -> None:
    bundle = {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:9f0c3e4a-0000-4000-8000-000000000002", "resource": {
                "resourceType": "Encounter", "status": "finished",
                "class": {"system": systems.V3_ACT_CODE, "code": "AMB"},
                "subject": {"reference": "urn:uuid:9f0c3e4a-0000-4000-8000-000000000001"}},
             "request": {"method": "POST", "url": "Encounter"}},
            {"fullUrl": "urn:uuid:9f0c3e4a-0000-4000-8000-000000000001",
             "resource": {"resourceType": "Patient", "name": [{"text": "王芳"}]},
             "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    raw = FhirRequest("POST", "", json.dumps(bundle).encode(), "HIS1", "QSWSY").encode()
    steps = plan(decode(raw), CodeTables.empty(), CST)
    assert [s.index for s in steps] == [1, 0]  # the patient first
    patient_step, encounter_step = steps
    assert patient_step.converted is not None and encounter_step.converted is not None
    [upsert] = patient_step.converted.commands
    assert isinstance(upsert, UpsertPatient)
    # no id, no identifier: the fullUrl's uuid is the sender's name for it, so the encounter can find it
    assert upsert.patient.identifiers == [sender("Patient", "9f0c3e4a-0000-4000-8000-000000000001")]
    [encounter] = encounter_step.converted.commands
    assert isinstance(encounter, UpsertEncounter) and encounter.patient == tuple(upsert.patient.identifiers)
