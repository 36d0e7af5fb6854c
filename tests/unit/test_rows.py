"""The row-level rules of DESIGN.md, role by role."""

from huizhen.integration.model import Consultation, ConsultationStatus, HumanName, Patient, Urgency
from huizhen.rbac.identity import Principal
from huizhen.rbac.rows import Scope


def _c(**kw: object) -> Consultation:
    base: dict[str, object] = dict(patient_id="pat-1", department="cardiology", urgency=Urgency.ROUTINE,
                                   chief_complaint="胸痛", facility_id="fac-a")
    base.update(kw)
    return Consultation(**base)  # type: ignore[arg-type]


def _scope(sub: str, role: str, facility: str | None = "F-A", **kw: object) -> Scope:
    return Scope.of(Principal(sub=sub, roles=(role,), facility=facility), **kw)  # type: ignore[arg-type]


def test_expert_sees_assigned_and_own_department_queue_only() -> None:
    s = _scope("exp-1", "expert", department="cardiology")
    assert s.sees_consultation(_c(expert_id="exp-1", status=ConsultationStatus.IN_PROGRESS))
    assert s.sees_consultation(_c(status=ConsultationStatus.PENDING))
    assert not s.sees_consultation(_c(status=ConsultationStatus.PENDING, department="neurology"))
    assert not s.sees_consultation(_c(status=ConsultationStatus.ASSIGNED, expert_id="exp-2"))
    assert not s.sees_consultation(_c(status=ConsultationStatus.DRAFT))


def test_expert_without_department_sees_no_queue() -> None:
    assert not _scope("exp-1", "expert").sees_consultation(_c(status=ConsultationStatus.PENDING))


def test_primary_doctor_sees_own_facility_and_own_requests() -> None:
    s = _scope("doc-1", "primary_doctor", facility_id="fac-a")
    assert s.sees_consultation(_c())
    assert not s.sees_consultation(_c(facility_id="fac-b"))
    assert s.sees_consultation(_c(facility_id="fac-b", requester_id="doc-1"))


def test_patient_sees_only_own() -> None:
    s = _scope("pat-1", "patient", facility=None)
    assert s.sees_consultation(_c())
    assert not s.sees_consultation(_c(patient_id="pat-2"))
    p = Patient(name=HumanName(text="王芳"), id="pat-1")
    assert s.sees_patient(p)
    assert not s.sees_patient(Patient(name=HumanName(text="李雷"), id="pat-2"))


def test_coordinator_platform_wide_or_facility_bound() -> None:
    assert _scope("co-1", "coordinator", facility="*").sees_consultation(_c(facility_id="fac-z"))
    bound = _scope("co-2", "coordinator", facility_id="fac-a")
    assert bound.sees_consultation(_c())
    assert not bound.sees_consultation(_c(facility_id="fac-b"))


def test_non_clinical_roles_see_no_rows() -> None:
    for role in ("integration_admin", "security_officer", "auditor"):
        s = _scope("u", role, facility="*", facility_id="fac-a")
        assert not s.sees_consultation(_c())
        assert not s.sees_patient(Patient(name=HumanName(text="王芳"), facility_id="fac-a"))


def test_patient_visible_through_a_visible_consultation() -> None:
    s = _scope("exp-1", "expert", department="cardiology")
    p = Patient(name=HumanName(text="王芳"), id="pat-1", facility_id="fac-a")
    assert not s.sees_patient(p)
    assert s.sees_patient(p, [_c(expert_id="exp-1")])


def test_alternate_codes_text_round_trips_and_matches_only_a_code() -> None:
    """The searchable text of an observation's other codings: read back as sent, and a LIKE
    pattern that finds a code (of a system, or of any) but never a display or a system."""
    import re

    from huizhen.integration.model import Coding
    from huizhen.integration.repo.clinical import codes_of, codes_pattern, codes_text

    codings = (Coding("WBC", "L", "白细胞计数"), Coding("5%_x", None, None), Coding("GLU", "99\x1fLAB", "GLU"))
    text = codes_text(codings)
    assert codes_of(text)[:2] == codings[:2] and codes_of(text)[2] == Coding("GLU", "99 LAB", "GLU")
    assert codes_text(()) is None and codes_of(None) == ()

    def like(pattern: str, value: str) -> bool:  # SQL LIKE with escape character \
        rx = "".join(
            ".*" if tok == "%" else "." if tok == "_" else re.escape(tok[-1])
            for tok in re.findall(r"\\.|%|_|[^%_\\]", pattern, re.S)
        )
        return re.fullmatch(rx, value, re.S) is not None

    assert like(codes_pattern("L", "WBC"), text) and like(codes_pattern(None, "WBC"), text)
    assert not like(codes_pattern("X", "WBC"), text)
    assert like(codes_pattern(None, "5%_x"), text) and not like(codes_pattern(None, "5%"), text)
    assert not like(codes_pattern(None, "白细胞计数"), text)  # a display is not a code
    assert not like(codes_pattern(None, "L"), text)  # nor is a system
