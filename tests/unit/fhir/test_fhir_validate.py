"""Validation of FHIR R4 JSON: every corpus example judged as the manifest says, every problem named by path."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from huizhen.mappings.fhir.jsonio import MAX_DEPTH, dumps, load_json
from huizhen.mappings.fhir.outcome import (
    InvalidResource,
    IssueSeverity,
    IssueType,
    error,
    information,
    operation_outcome,
)
from huizhen.mappings.fhir.validate import parse_resource, validate_resource

CORPUS = Path(os.environ.get("HUIZHEN_CORPUS", "/work/shared/corpus"))
pytestmark = pytest.mark.skipif(not (CORPUS / "manifest.json").exists(), reason="test corpus not present")


def _manifest() -> list[dict[str, Any]]:
    if not (CORPUS / "manifest.json").exists():
        return []
    files = json.loads((CORPUS / "manifest.json").read_text("utf-8"))["files"]
    return [f for f in files if f["kind"] == "fhir"]


FILES = _manifest()


def _invalid(body: bytes | str, **kwargs: Any) -> InvalidResource:
    with pytest.raises(InvalidResource) as caught:
        parse_resource(body, **kwargs)
    return caught.value


def _expressions(exc: InvalidResource) -> set[str]:
    return {e for issue in exc.issues if issue.blocking for e in issue.expression}


@pytest.mark.parametrize("entry", [f for f in FILES if f["expected_valid"]], ids=lambda f: Path(f["path"]).name)
def test_every_valid_example_validates(entry: dict[str, Any]) -> None:
    validated = parse_resource((CORPUS / entry["path"]).read_bytes())
    assert validated.resource_type == entry["type"]
    assert validated.model is not None
    assert not any(issue.blocking for issue in validated.warnings)


@pytest.mark.parametrize("entry", [f for f in FILES if not f["expected_valid"]], ids=lambda f: Path(f["path"]).name)
def test_every_invalid_example_is_rejected_with_an_outcome(entry: dict[str, Any]) -> None:
    exc = _invalid((CORPUS / entry["path"]).read_bytes())
    outcome = exc.outcome()
    validate_resource(outcome, expected_type="OperationOutcome")  # the answer is itself valid FHIR
    assert any(i["severity"] == "error" and i["diagnostics"] for i in outcome["issue"])


EXPECTED_PATHS = {
    "Normative_ObservationWithInvalidStatus.json": {"Observation.status", "Observation.code"},
    "Normative_ObservationWithNoCode.json": {"Observation.code"},
    "Normative_PatientMissingResourceType.json": {"resourceType"},
    "Normative_Bundle-InvalidBundleType.json": {"Bundle.type"},
    "Normative_Bundle-TypeMissing.json": {"Bundle.type"},
    "Normative_InvalidObservation.json": {"Observation.text"},
    "Normative_Observation-For-Patient-f001.json": {"Observation.interpretation"},
    "Normative_ObservationWithTemperature.json": {"Observation.interpretation"},
    "Normative_ObservationWithInvalidDecimalSpecification.json": {"Observation.valueQuantity.value"},
    "Normative_Patient.json": {"Patient.meta.lastUpdated"},
    "Normative_PatientWithUnknownElements.json": {"Patient.name1"},
    "ObservationBundle.json": {"Bundle.entry[1].resourceType"},
    "hl7v2-expected_ADT01-23-expected.json": {"Bundle.entry[12].resource.agent"},
    "hl7v2-expected_LAB-ORU-1-expected.json": {"Bundle.entry[1].resource.agent[0].who"},
    "R4_SmartPatientA.json": {
        "Bundle.entry[10].resource.participant[0].status",
        "Bundle.entry[11].resource.series[0].modality",
        "Bundle.entry[11].resource.series[0].instance[0].sopClass",
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED_PATHS))
def test_invalid_examples_name_the_element(name: str) -> None:
    path = next(CORPUS.glob(f"fhir/*/{name}"))
    assert EXPECTED_PATHS[name] <= _expressions(_invalid(path.read_bytes()))


def test_invalid_status_is_a_code_outside_the_value_set() -> None:
    path = next(CORPUS.glob("fhir/*/Normative_ObservationWithInvalidStatus.json"))
    status = next(i for i in _invalid(path.read_bytes()).issues if i.expression == ("Observation.status",))
    assert status.code is IssueType.CODE_INVALID
    assert "this_is_invalid" in status.diagnostics


def test_missing_code_is_required() -> None:
    path = next(CORPUS.glob("fhir/*/Normative_ObservationWithNoCode.json"))
    issue = _invalid(path.read_bytes()).issues[0]
    assert (issue.code, issue.expression) == (IssueType.REQUIRED, ("Observation.code",))


def test_not_json_and_not_objects() -> None:
    broken = next(CORPUS.glob("fhir/*/Normative_Bundle-TransactionWithInvalidBundleEntry.json"))
    assert _invalid(broken.read_bytes()).issues[0].code is IssueType.STRUCTURE
    for body in (b"", b"MSH|^~\\&|", b"[1, 2]", b'"Patient"', b"42", b"null"):
        assert _invalid(body).issues[0].code is IssueType.STRUCTURE, body


def test_bad_bytes_duplicates_and_non_numbers() -> None:
    assert "UTF-8" in _invalid(b'{"resourceType": "Patient", "id": "\xff"}').issues[0].diagnostics
    assert (
        "duplicate"
        in _invalid(b'{"resourceType": "Patient", "gender": "male", "gender": "female"}').issues[0].diagnostics
    )
    assert _invalid(b'{"resourceType": "Observation", "valueDecimal": NaN}').issues[0].code is IssueType.STRUCTURE


def test_a_leading_bom_is_tolerated() -> None:
    assert parse_resource('\ufeff{"resourceType": "Patient", "gender": "female"}'.encode()).model is not None


def test_depth_limit() -> None:
    ok = {"resourceType": "Patient"}
    nested: Any = "x"
    for _ in range(MAX_DEPTH):
        nested = {"a": nested}
    assert load_json(json.dumps(ok)) == ok
    assert _invalid(json.dumps({"resourceType": "Patient", "x": nested})).issues[0].code is IssueType.TOO_COSTLY
    very_deep = "[" * 100_000 + "]" * 100_000  # beyond the parser's own recursion limit
    assert _invalid(very_deep).issues[0].code is IssueType.TOO_COSTLY


def test_resource_type_problems() -> None:
    assert _invalid(b'{"id": "x"}').issues[0].code is IssueType.REQUIRED
    assert "not a FHIR R4" in _invalid(b'{"resourceType": "Pateint"}').issues[0].diagnostics
    assert "R4B" in _invalid(b'{"resourceType": "SubscriptionTopic", "status": "active"}').issues[0].diagnostics
    assert "HumanName" in _invalid(b'{"resourceType": "HumanName"}').issues[0].diagnostics
    wrong = _invalid(b'{"resourceType": "Observation"}', expected_type="Patient").issues[0]
    assert (wrong.code, wrong.expression) == (IssueType.INVALID, ("resourceType",))


def test_r4_types_without_an_r4_model_are_reported_not_silently_accepted() -> None:
    validated = parse_resource(b'{"resourceType": "MedicinalProduct", "id": "m1"}')
    assert validated.model is None
    assert validated.warnings[0].severity is IssueSeverity.INFORMATION


def test_json_types_are_strict_where_pydantic_coerces() -> None:
    exc = _invalid(b'{"resourceType": "Patient", "active": "yes", "multipleBirthInteger": "2"}')
    assert _expressions(exc) == {"Patient.active", "Patient.multipleBirthInteger"}
    obs = b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": "7"}}'
    assert _expressions(_invalid(obs)) == {"Observation.valueQuantity.value"}


def test_null_and_required_codes_inside_nested_resources() -> None:
    body = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "gender": "man", "birthDate": None}},
            {"resource": {"resourceType": "Observation", "status": "done", "code": {"text": "x"}}},
        ],
    }
    exc = _invalid(json.dumps(body))
    assert {
        "Bundle.entry[0].resource.gender",
        "Bundle.entry[0].resource.birthDate",
        "Bundle.entry[1].resource.status",
    } <= _expressions(exc)


def test_unknown_nested_resource_type_is_an_issue_not_a_crash() -> None:
    body = {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": {"resourceType": "Foo"}}]}
    assert _expressions(_invalid(json.dumps(body))) == {"Bundle.entry[0].resource.resourceType"}


def test_primitive_extension_arrays_may_pad_with_null() -> None:
    body = {
        "resourceType": "Patient",
        "name": [
            {"given": ["Peter", "James"], "_given": [None, {"extension": [{"url": "http://x", "valueString": "y"}]}]}
        ],
    }
    assert parse_resource(json.dumps(body)).model is not None


def test_decimals_keep_their_precision_both_ways() -> None:
    body = b'{"resourceType":"Observation","status":"final","code":{"text":"Hb"},"valueQuantity":{"value":7.20}}'
    validated = parse_resource(body)
    assert validated.data["valueQuantity"]["value"] == Decimal("7.20")
    assert dumps(validated.data) == body
    assert json.loads(dumps(validated.data, indent=2)) == json.loads(body)


def test_chinese_text_survives() -> None:
    body = '{"resourceType":"Patient","name":[{"text":"张三","family":"张","given":["三"]}]}'.encode()
    assert parse_resource(body).data["name"][0]["text"] == "张三"
    assert dumps(load_json(body)) == body


def test_operation_outcome_builder() -> None:
    issues = [
        error(IssueType.VALUE, "bad date", "Patient.birthDate"),
        information(IssueType.INFORMATIONAL, "Claim is validated but not applied", "Bundle.entry[3].resource"),
    ]
    outcome = operation_outcome(issues, id="oo1")
    assert outcome["issue"][0] == {
        "severity": "error",
        "code": "value",
        "diagnostics": "bad date",
        "expression": ["Patient.birthDate"],
    }
    assert validate_resource(outcome).model is not None
    assert operation_outcome([])["issue"][0]["code"] == "informational"
    assert str(InvalidResource(issues)) == "Patient.birthDate: bad date"
