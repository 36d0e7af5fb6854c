"""ORM^O01 / OMG^O19 / REF^I12 → RequestConsultation, CancelConsultation, or filtered."""

from __future__ import annotations

import pytest

from huizhen.integration.commands import (
    UNRESOLVED,
    CancelConsultation,
    RequestConsultation,
    UpsertPatient,
)
from huizhen.integration.model import ConsultationStatus, HumanName, Identifier, Urgency
from huizhen.mappings.hl7v2.context import MappingContext, MappingResult
from huizhen.mappings.hl7v2.errors import MappingError
from huizhen.mappings.hl7v2.tables import ErrorCode

from .conftest import corpus, map_raw, message, segment

ORM = "ORM^O01^ORM_O01"
PID = "PID|1||0001234^^^QSWSY^MR||张^三||19900101|1"
PV1 = segment("PV1", {2: "O", 10: "全科", 19: "V1"})
DG1 = "DG1|1||I20.000^不稳定型心绞痛^ICD10"
NTE = "NTE|1||请协助判断是否需要介入治疗"


def orc(control: str = "NW", placer: str = "HZ20240301007^QSWSY", **more: str) -> str:
    fields = {1: control, 2: placer, 12: "D001^李^明^^^^^^QSWSY"}
    fields.update({7: more["timing"]} if "timing" in more else {})
    fields.update({16: more["reason"]} if "reason" in more else {})
    return segment("ORC", fields)


def obr(code: str = "HZCONSULT-CARD^心内科远程会诊^L", **more: str) -> str:
    fields = {1: "1", 2: "HZ20240301007", 4: code, 13: "胸痛3天，加重2小时"}
    positions = {"section": 24, "timing": 27, "reason": 31, "info": 13}
    fields.update({positions[k]: v for k, v in more.items()})
    return segment("OBR", fields)


def request_of(result: MappingResult) -> RequestConsultation:
    (found,) = [c for c in result.commands if isinstance(c, RequestConsultation)]
    return found


@pytest.mark.parametrize(("charset", "encoding"), [("UNICODE UTF-8", "utf-8"), ("GB 18030-2000", "gb18030")])
def test_chinese_consultation_request(charset: str, encoding: str, context: MappingContext) -> None:
    raw = message(PID, PV1, orc(timing="^^^^^S"), obr(), NTE, DG1, type=ORM, charset=charset, encoding=encoding)
    result = map_raw(raw, context)
    assert isinstance(result.commands[0], UpsertPatient)
    command = request_of(result)
    consultation = command.consultation
    assert consultation.patient_id == UNRESOLVED
    assert consultation.status is ConsultationStatus.DRAFT  # the engine submits it
    assert consultation.source_order == Identifier("QSWSY", "HZ20240301007")
    assert consultation.department == "心血管内科"
    assert consultation.urgency is Urgency.CRITICAL
    assert consultation.chief_complaint == "胸痛3天，加重2小时"
    assert consultation.question == "请协助判断是否需要介入治疗"
    assert (consultation.disease_code, consultation.disease_name) == ("I20.000", "不稳定型心绞痛")
    assert command.patient == (Identifier("QSWSY", "0001234"),)
    assert command.facility_code == "QSWSY"
    assert command.requester is not None
    assert command.requester.name == HumanName("李", ("明",), "李明")
    assert command.requester.identifiers == [Identifier("QSWSY", "D001")]
    assert result.filtered is None and result.warnings == ()


def test_department_from_obr24_when_the_code_names_none(context: MappingContext) -> None:
    raw = message(PID, orc(), obr("HZCONSULT^远程会诊^L", section="NEURO"), type=ORM)
    assert request_of(map_raw(raw, context)).consultation.department == "神经内科"


def test_no_department_anywhere_is_a_located_error(context: MappingContext) -> None:
    raw = message(PID, orc(), obr("HZCONSULT^远程会诊^L"), type=ORM)
    with pytest.raises(MappingError) as caught:
        map_raw(raw, context)
    assert caught.value.detail.code is ErrorCode.REQUIRED_FIELD_MISSING
    assert caught.value.detail.location is not None
    assert (caught.value.detail.location.segment_id, caught.value.detail.location.field) == (
        "OBR",
        24,
    )


def test_order_text_can_name_the_consultation(context: MappingContext) -> None:
    raw = message(PID, orc(), obr("90001^会诊^L", section="心内"), type=ORM)
    assert request_of(map_raw(raw, context)).consultation.department == "心血管内科"


@pytest.mark.parametrize(
    ("segments", "urgency"),
    [
        ((orc(), obr()), Urgency.ROUTINE),
        ((orc(timing="^^^^^A"), obr()), Urgency.URGENT),
        ((orc(), obr(timing="^^^^^S")), Urgency.CRITICAL),
        ((orc(timing="^^^^^R"), "TQ1|1||||||||S", obr()), Urgency.CRITICAL),
        ((orc(timing="^^^^^危急"), obr()), Urgency.CRITICAL),
    ],
)
def test_urgency_from_priority(segments: tuple[str, ...], urgency: Urgency, context: MappingContext) -> None:
    raw = message(PID, *segments, type="OMG^O19^OMG_O19")
    assert request_of(map_raw(raw, context)).consultation.urgency is urgency


def test_unknown_priority_is_an_error_not_a_guess(context: MappingContext) -> None:
    raw = message(PID, orc(timing="^^^^^Z"), obr(), type=ORM)
    with pytest.raises(MappingError) as caught:
        map_raw(raw, context)
    location = caught.value.detail.location
    assert caught.value.detail.code is ErrorCode.TABLE_VALUE_NOT_FOUND
    assert location is not None and (location.segment_id, location.field, location.component) == (
        "ORC",
        7,
        6,
    )


def test_disease_from_obr31_and_complaint_from_notes(context: MappingContext) -> None:
    raw = message(PID, orc(), obr(reason="R07.4^胸痛^ICD10", info=""), NTE, type=ORM)
    consultation = request_of(map_raw(raw, context)).consultation
    assert (consultation.disease_code, consultation.disease_name) == ("R07.4", "胸痛")
    assert consultation.chief_complaint == "请协助判断是否需要介入治疗"
    assert consultation.question is None


def test_cancel_order(context: MappingContext) -> None:
    raw = message(PID, orc("CA", reason="^患者已转院"), obr(), type=ORM)
    commands = map_raw(raw, context).commands
    assert commands[1] == CancelConsultation(Identifier("QSWSY", "HZ20240301007"), "患者已转院")


def test_only_consultation_orders_count(context: MappingContext) -> None:
    raw = message(PID, orc(placer="LAB1^QSWSY"), obr("24317-0^Hemogram^LN"), orc(), obr(), type=ORM)
    result = map_raw(raw, context)
    assert [type(c) for c in result.commands] == [UpsertPatient, RequestConsultation]


@pytest.mark.parametrize("name", ["ORM-O01-01.hl7", "LAB-ORM-1.hl7", "OMG-O19-01.hl7"])
def test_non_consultation_orders_are_filtered(name: str, context: MappingContext) -> None:
    result = map_raw(corpus(name), context)
    assert result.commands == ()
    assert result.filtered is not None and "no consultation request" in result.filtered


def test_status_change_of_a_consultation_order_is_filtered(context: MappingContext) -> None:
    result = map_raw(message(PID, orc("SC"), obr(), type=ORM), context)
    assert result.commands == () and result.filtered


def test_placer_number_is_required(context: MappingContext) -> None:
    raw = message(PID, orc(placer=""), segment("OBR", {1: "1", 4: "HZCONSULT-CARD"}), type=ORM)
    with pytest.raises(MappingError) as caught:
        map_raw(raw, context)
    assert caught.value.detail.location is not None
    assert caught.value.detail.location.field == 2


def test_placer_without_namespace_takes_the_facility_code(context: MappingContext) -> None:
    raw = message(PID, orc(placer="HZ9"), obr(), type=ORM, sender="HIS|QSWSY_LIS")
    order = request_of(map_raw(raw, context)).consultation.source_order
    assert order == Identifier("QSWSY", "HZ9")


REF = "REF^I12^REF_I12"


def rf1(kind: str, priority: str = "S^STAT^HL70280") -> str:
    return segment("RF1", {1: "P^Pending^HL70283", 2: priority, 3: kind, 6: "RF2024001^QSWSY"})


def test_referral_as_consultation_request(context: MappingContext) -> None:
    prd = segment("PRD", {1: "RP^Referring Provider^HL70286", 2: "王^芳", 7: "D002^SL"})
    raw = message(
        rf1("HZCONSULT-NEURO^神经内科会诊^L"),
        prd,
        PID,
        "DG1|1||I63.9^脑梗死^ICD10",
        "NTE|1||左侧肢体无力6小时",
        type=REF,
    )
    command = request_of(map_raw(raw, context))
    consultation = command.consultation
    assert consultation.source_order == Identifier("QSWSY", "RF2024001")
    assert consultation.department == "神经内科"
    assert consultation.urgency is Urgency.CRITICAL
    assert consultation.disease_code == "I63.9"
    assert consultation.chief_complaint == "左侧肢体无力6小时"
    assert command.requester is not None and command.requester.name.text == "王芳"
    assert command.requester.identifiers == [Identifier("QSWSY", "D002")]


def test_corpus_referral_that_is_no_consultation(context: MappingContext) -> None:
    result = map_raw(corpus("REF-I12-01.hl7"), context)
    assert result.filtered is not None and "Med" in result.filtered


def test_referral_with_unknown_department(context: MappingContext) -> None:
    with pytest.raises(MappingError) as caught:
        map_raw(message(rf1("HZCONSULT^远程会诊^L"), PID, type=REF), context)
    assert caught.value.detail.location is not None
    assert (caught.value.detail.location.segment_id, caught.value.detail.location.field) == (
        "RF1",
        3,
    )


def test_filtering_comes_before_patient_mapping(context: MappingContext) -> None:
    raw = message(orc(placer="LAB1^QSWSY"), obr("24317-0^Hemogram^LN"), type=ORM)  # no PID at all
    assert map_raw(raw, context).filtered is not None
