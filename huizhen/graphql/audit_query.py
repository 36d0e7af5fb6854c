"""The audit viewer's filters, from GraphQL arguments to :class:`AuditFilter` (patient by identifier or pseudonym)."""

from __future__ import annotations

from huizhen.graphql.types import Info
from huizhen.graphql.worklist import parse_time
from huizhen.integration.repo.audit import AuditFilter
from huizhen.integration.repo.visibility import PatientRows

_PSEUDONYM_PREFIX = "HZP-"


async def audit_filter(
    info: Info, *, patient: str | None = None, action: str | None = None, outcome: str | None = None,
    since: str | None = None, until: str | None = None,
) -> AuditFilter:
    """``patient``: a Huizhen id, an identifier (``value`` or ``system|value``, through the blind
    index) or a pseudonym (``HZP-…``, matched against the patients the trail names)."""
    ids: tuple[str, ...] | None = None
    if patient is not None and patient.strip():
        ids = await _patient_entity_ids(info, patient.strip())
    return AuditFilter(
        action=action or None, outcome=outcome or None, since=parse_time((since or "").strip() or None, "since"),
        until=parse_time((until or "").strip() or None, "until"), entity_ids=ids,
    )


async def _patient_entity_ids(info: Info, patient: str) -> tuple[str, ...]:
    services = info.context.services
    found: set[str] = set()
    async with services.store.read() as repo:
        if patient.upper().startswith(_PSEUDONYM_PREFIX) and services.pseudonyms is not None:
            of = services.pseudonyms.of
            found |= {pid for pid in await repo.audit.patient_entity_ids() if of(pid) == patient.upper()}
        else:
            page = await repo.patients.search(identifier=patient, first=50, visible=PatientRows(everything=True))
            found |= {p.id for p, _ in page.items}
            if await repo.patients.get(patient) is not None:
                found.add(patient)
    # a patient's observations and studies are audited as "patient:<id>"
    return tuple(sorted(found | {f"patient:{pid}" for pid in found}))
