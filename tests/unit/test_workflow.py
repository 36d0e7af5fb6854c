from datetime import UTC, datetime

import pytest

from huizhen.integration import workflow
from huizhen.integration.errors import BadInput, InvalidTransition
from huizhen.integration.model import Consultation, Urgency
from huizhen.integration.model import ConsultationStatus as S
from huizhen.integration.workflow import Transition as T

AT = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)

ALLOWED = {
    (S.DRAFT, T.SUBMIT): S.PENDING,
    (S.PENDING, T.ASSIGN): S.ASSIGNED,
    (S.ASSIGNED, T.DECLINE): S.PENDING,
    (S.ASSIGNED, T.START): S.IN_PROGRESS,
    (S.IN_PROGRESS, T.COMPLETE): S.COMPLETED,
    (S.DRAFT, T.CANCEL): S.CANCELLED,
    (S.PENDING, T.CANCEL): S.CANCELLED,
    (S.ASSIGNED, T.CANCEL): S.CANCELLED,
    (S.IN_PROGRESS, T.CANCEL): S.CANCELLED,
}

ARGS = {
    T.ASSIGN: {"expert_id": "e1"},
    T.DECLINE: {"detail": "on leave"},
    T.COMPLETE: {"diagnosis": "心绞痛", "treatment_plan": "转诊"},
    T.CANCEL: {"detail": "patient recovered"},
}


def consultation(status: S) -> Consultation:
    c = Consultation(patient_id="p1", department="心血管内科", urgency=Urgency.URGENT, chief_complaint="胸闷")
    c.status = status
    return c


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("transition", list(T))
def test_every_state_and_transition(status: S, transition: T) -> None:
    c = consultation(status)
    if (status, transition) in ALLOWED:
        event = workflow.apply(c, transition, at=AT, actor="u1", **ARGS.get(transition, {}))  # type: ignore[arg-type]
        assert c.status is ALLOWED[(status, transition)]
        assert c.timeline == [event]
        assert event.at == AT and event.actor == "u1"
    else:
        with pytest.raises(InvalidTransition) as err:
            workflow.apply(c, transition, at=AT, actor="u1", **ARGS.get(transition, {}))  # type: ignore[arg-type]
        assert err.value.state == status.value
        assert err.value.transition == transition.value
        assert status.value in str(err.value) and transition.value in str(err.value)
        assert c.status is status and c.timeline == []


def test_full_path_records_timeline_in_order() -> None:
    c = consultation(S.DRAFT)
    workflow.created(c, at=AT, actor="doc")
    for t in (T.SUBMIT, T.ASSIGN, T.DECLINE, T.ASSIGN, T.START, T.COMPLETE):
        workflow.apply(c, t, at=AT, actor="x", **ARGS.get(t, {}))  # type: ignore[arg-type]
    assert [e.type for e in c.timeline] == [
        "CREATED",
        "SUBMITTED",
        "ASSIGNED",
        "DECLINED",
        "ASSIGNED",
        "STARTED",
        "COMPLETED",
    ]
    assert c.status is S.COMPLETED and c.diagnosis == "心绞痛" and c.completed_at == AT


def test_decline_clears_expert() -> None:
    c = consultation(S.PENDING)
    workflow.apply(c, T.ASSIGN, at=AT, actor="x", expert_id="e1")
    workflow.apply(c, T.DECLINE, at=AT, actor="e1", detail="busy")
    assert c.expert_id is None and c.status is S.PENDING


@pytest.mark.parametrize(
    ("transition", "status", "kwargs"),
    [
        (T.CANCEL, S.PENDING, {"detail": "  "}),
        (T.DECLINE, S.ASSIGNED, {}),
        (T.COMPLETE, S.IN_PROGRESS, {"diagnosis": "x"}),
        (T.ASSIGN, S.PENDING, {}),
    ],
)
def test_missing_reason_or_result_is_bad_input(transition: T, status: S, kwargs: dict[str, str]) -> None:
    c = consultation(status)
    with pytest.raises(BadInput):
        workflow.apply(c, transition, at=AT, actor="x", **kwargs)  # type: ignore[arg-type]
    assert c.status is status


def test_allowed_transitions_of_terminal_states_are_empty() -> None:
    assert workflow.allowed_transitions(S.COMPLETED) == []
    assert workflow.allowed_transitions(S.CANCELLED) == []
    assert set(workflow.allowed_transitions(S.ASSIGNED)) == {T.DECLINE, T.START, T.CANCEL}
