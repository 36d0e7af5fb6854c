"""Code tables: the shipped CSVs load, facility rows win, broken tables stop start-up."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from huizhen.integration.errors import ConfigurationError
from huizhen.integration.model import Coding, FacilityLevel, Gender, Urgency
from huizhen.mappings.codes import CodeTables, ConsultationOrder, load_code_tables
from huizhen.mappings.hl7v2.context import MappingContext

from .conftest import CONFIG, map_raw, message

LOINC = "http://loinc.org"


def test_shipped_tables(tables: CodeTables) -> None:
    assert tables.lab_codes.get(None, "L", "WBC") == Coding(
        "6690-2", LOINC, "Leukocytes [#/volume] in Blood by Automated count"
    )
    assert tables.lab_codes.get("QSWSY", None, "肌钙蛋白I") is not None
    assert tables.departments.get(None, "心内科") == "心血管内科"
    assert tables.departments.get(None, "cardiology") == "心血管内科"  # case-insensitive
    assert tables.consultation_orders.get(None, "hzconsult-card") == ConsultationOrder("HZCONSULT-CARD", "心血管内科")
    assert tables.consultation_orders.get(None, "会诊") == ConsultationOrder("会诊", None)
    assert tables.priorities.get(None, "S") is Urgency.CRITICAL
    assert tables.genders.get(None, "女") is Gender.FEMALE
    assert tables.patient_classes.get(None, "急诊") == "EMER"
    facility = tables.facility("qswsy_lis")
    assert facility is not None and facility.code == "QSWSY"
    assert facility.to_facility().name == "青山镇卫生院"
    assert tables.facility("SRMYY").level is FacilityLevel.TERTIARY  # type: ignore[union-attr]


def copy_config(tmp_path: Path) -> Path:
    folder = tmp_path / "mappings"
    shutil.copytree(CONFIG, folder)
    return folder


def append(path: Path, *rows: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(f"{row}\n" for row in rows))


def test_facility_rows_win_over_rows_for_all(tmp_path: Path) -> None:
    folder = copy_config(tmp_path)
    append(folder / "consultation_orders.csv", "DCRMYY,XY99,儿科,东城区人民医院会诊码")
    append(folder / "lab_codes.csv", "DCRMYY,,WBC,26464-8,Leukocytes [#/volume] in Blood")
    append(folder / "lab_codes.csv", ",LIS2,GLU,2339-0,Glucose [Mass/volume] in Blood")
    tables = load_code_tables(folder)
    assert tables.consultation_orders.get("DCRMYY", "XY99") == ConsultationOrder("XY99", "儿科")
    assert tables.consultation_orders.get("QSWSY", "XY99") is None
    assert tables.lab_codes.get("DCRMYY", "L", "WBC").code == "26464-8"  # type: ignore[union-attr]
    assert tables.lab_codes.get("QSWSY", "L", "WBC").code == "6690-2"  # type: ignore[union-attr]
    assert tables.lab_codes.get(None, "LIS2", "GLU").code == "2339-0"  # type: ignore[union-attr]
    assert tables.lab_codes.get(None, "OTHER", "GLU").code == "2345-7"  # type: ignore[union-attr]


def test_a_facility_specific_consultation_code_drives_mapping(tmp_path: Path) -> None:
    folder = copy_config(tmp_path)
    append(folder / "consultation_orders.csv", "DCRMYY,XY99,儿科,")
    context = MappingContext(load_code_tables(folder))
    orc = "ORC|NW|P77^DCRMYY"
    obr = "OBR|1|P77||XY99^儿科会诊^L"
    pid = "PID|1||C1^^^DCRMYY||王^小明"
    result = map_raw(message(pid, orc, obr, type="ORM^O01", sender="HIS|DCRMYY"), context)
    assert result.filtered is None and len(result.commands) == 2
    elsewhere = map_raw(message(pid, orc, obr, type="ORM^O01", sender="HIS|QSWSY"), context)
    assert elsewhere.filtered is not None


@pytest.mark.parametrize(
    ("file", "row", "complaint"),
    [
        ("priorities.csv", ",X,SOMEDAY", "'SOMEDAY' is not a valid value"),
        ("genders.csv", ",X,", "empty gender"),
        ("facilities.csv", "A,A,Name,QUATERNARY,", "'QUATERNARY'"),
        ("lab_codes.csv", ",,LOCAL,,", "empty loinc_code"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, file: str, row: str, complaint: str) -> None:
    folder = copy_config(tmp_path)
    lines = len((folder / file).read_text(encoding="utf-8").splitlines())
    append(folder / file, row)
    with pytest.raises(ConfigurationError) as caught:
        load_code_tables(folder)
    assert f"{file}:{lines + 1}" in str(caught.value) and complaint in str(caught.value)


def test_missing_column_and_missing_file(tmp_path: Path) -> None:
    folder = copy_config(tmp_path)
    (folder / "departments.csv").write_text("facility,local_code\n,CARD\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"missing column.*department"):
        load_code_tables(folder)
    (folder / "departments.csv").unlink()
    with pytest.raises(ConfigurationError, match=r"departments\.csv"):
        load_code_tables(folder)


def test_excel_bom_is_accepted(tmp_path: Path) -> None:
    folder = copy_config(tmp_path)
    path = folder / "priorities.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_code_tables(folder).priorities.get(None, "A") is Urgency.URGENT
