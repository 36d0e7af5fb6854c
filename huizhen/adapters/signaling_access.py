"""Who may join a consultation's call room: the one place that decides.

The consultation's participants (the requesting doctor, the assigned expert,
the patient, each as the token's ``sub`` and seen by their row-level
:class:`~huizhen.rbac.rows.Scope`) and the roles the settings allow to join
beside them (``signaling_observer_roles``, e.g. a coordinator who sees the
consultation), and only while it is ASSIGNED or IN_PROGRESS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from huizhen.adapters.signaling_protocol import Code, SignalingError
from huizhen.integration.model import Consultation, ConsultationStatus
from huizhen.rbac.identity import Principal
from huizhen.rbac.rows import PLATFORM
from huizhen.rbac.viewer import resolve_scope

if TYPE_CHECKING:
    from huizhen.app import Services

JOINABLE = frozenset({ConsultationStatus.ASSIGNED, ConsultationStatus.IN_PROGRESS})
OPEN = frozenset(ConsultationStatus) - {ConsultationStatus.COMPLETED, ConsultationStatus.CANCELLED}


@dataclass(frozen=True, slots=True)
class Admission:
    consultation: Consultation
    part: str  # expert, requester, patient or observer

    @property
    def starts_call(self) -> bool:
        """The expert's join moves an ASSIGNED consultation to IN_PROGRESS."""
        return self.part == "expert"


def participant_part(c: Consultation, sub: str) -> str | None:
    if c.expert_id == sub:
        return "expert"
    if c.requester_id == sub:
        return "requester"
    if c.patient_id == sub:
        return "patient"
    return None


async def authorize_join(
    services: Services, principal: Principal, consultation_id: str, *,
    statuses: frozenset[ConsultationStatus] = JOINABLE,
) -> Admission:
    """Admit ``principal`` to the consultation's room, or raise a :class:`SignalingError`."""
    async with services.store.read() as repo:
        c = await repo.consultations.get(consultation_id)
    domain = principal.facility or PLATFORM
    roles = services.authorizer.roles_of(principal.sub, principal.roles, domain)
    if not services.authorizer.allowed(roles, domain, "call", "join"):
        raise SignalingError(Code.FORBIDDEN, f"{', '.join(sorted(roles)) or 'no role'} in {domain} may not join calls")
    scope = await resolve_scope(services.store, principal, roles)
    if c is None or not scope.sees_consultation(c):
        raise SignalingError(Code.NOT_FOUND, f"no consultation {consultation_id!r} for this user")
    part = participant_part(c, principal.sub)
    if part is None:
        if not services.authorizer.allowed(roles, domain, "call", "observe"):
            raise SignalingError(Code.FORBIDDEN, "only the consultation's participants may join its call")
        part = "observer"
    if c.status not in statuses:
        raise SignalingError(Code.ROOM_CLOSED, f"consultation {c.number} is {c.status.value}: its room is closed")
    return Admission(c, part)
