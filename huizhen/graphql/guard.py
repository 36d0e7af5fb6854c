"""Authorization for the GraphQL edge: Casbin role checks as field permissions, row rules, the audit flush.

Two kinds of "no", chosen so that a denial leaks nothing:

* ``FORBIDDEN`` when the viewer's roles may not do the operation at all
  (``can("patient", "read")`` on the field). The answer depends only on the
  roles and the operation, never on which rows exist.
* A row the viewer may not see is treated exactly like a row that does not
  exist: a nullable lookup (``patient(id)``, ``consultation(id)``) answers
  ``null``, an operation on an id (a mutation, ``imagingStudies``) answers
  ``NOT_FOUND``, and lists count and return visible rows only.

Every check that fails, and every patient-data row handed out, is recorded
in the request's audit buffer; :class:`AuditFlush` writes it in one insert
when the operation ends.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.permission import BasePermission

from huizhen.graphql.types import Info
from huizhen.integration import model as m
from huizhen.integration.errors import Forbidden, NotFound
from huizhen.rbac.audit import DENIED


@functools.cache
def _permission(obj: str, action: str) -> type[BasePermission]:
    class Can(BasePermission):
        message = f"not allowed to {action} {obj}"
        needs = (obj, action)  # read by huizhen.graphql.direct_resolvers.install_direct_resolvers

        def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
            ctx = info.context
            if ctx.allowed(obj, action):
                return True
            ctx.audited().add(action, obj, None, DENIED, detail=f"{info.python_name}")
            raise Forbidden(f"{', '.join(sorted(ctx.roles)) or 'no role'} in {ctx.domain} may not {action} {obj}")

    Can.__name__ = f"Can_{action}_{obj}"
    return Can


def can(obj: str, action: str) -> list[type[BasePermission]]:
    """``permission_classes`` for a field: the viewer's roles must allow ``action`` on ``obj``."""
    return [_permission(obj, action)]


def read(info: Info, entity_type: str, entity_id: str) -> None:
    info.context.audited().add("read", entity_type, entity_id)


async def sees_consultation(info: Info, c: m.Consultation | None) -> bool:
    if c is None or not (await info.context.scope()).sees_consultation(c):
        return False
    read(info, "Consultation", c.id)
    return True


async def sees_patient(info: Info, p: m.Patient | None) -> bool:
    if p is None:
        return False
    scope = await info.context.scope()
    if not scope.sees_patient(p):  # the cheap rules first; then through the patient's consultations
        async with info.context.services.store.read() as repo:
            consultations = await repo.consultations.for_patients([p.id])
        if not scope.sees_patient(p, consultations):
            return False
    read(info, "Patient", p.id)
    return True


async def consultation_for_change(info: Info, consultation_id: str) -> m.Consultation:
    """The consultation a mutation acts on; hidden and unknown alike are NOT_FOUND."""
    async with info.context.services.store.read() as repo:
        c = await repo.consultations.get(consultation_id)
    if c is None or not (await info.context.scope()).sees_consultation(c):
        info.context.audited().add("write", "Consultation", consultation_id, DENIED, detail="not visible")
        raise NotFound("Consultation", consultation_id)
    return c


async def patient_for_use(info: Info, patient_id: str) -> m.Patient:
    p = await info.context.loaders.patient.load(patient_id)
    if p is None or not await sees_patient(info, p):
        info.context.audited().add("read", "Patient", patient_id, DENIED, detail="not visible")
        raise NotFound("Patient", patient_id)
    return p


def wrote(info: Info, entity_type: str, entity_id: str, detail: str) -> None:
    info.context.audited().add("write", entity_type, entity_id, detail=detail)


class AuditFlush(SchemaExtension):
    """Writes the request's audit events (reads, writes, denials) in one insert when the operation
    ends; for a subscription (and any streamed result), those of each result before it is sent:
    a subscription's operation ends only when it is cancelled, and a cancelled operation never
    reaches the end of :meth:`on_operation`."""

    async def on_operation(self) -> AsyncIterator[None]:  # type: ignore[override]
        yield
        await self._flush(self.execution_context.result)

    async def on_stream_result(self, result: Any) -> AsyncIterator[None]:  # type: ignore[override]
        await self._flush(result)
        yield

    async def _flush(self, result: Any) -> None:
        ctx = self.execution_context.context
        buffer = getattr(ctx, "audit", None)
        if buffer is None or not buffer.events:
            return
        if result is not None and getattr(result, "errors", None):  # a write that raised did not happen
            for e in buffer.events:
                if e.action == "write" and e.outcome == "success":
                    e.outcome, e.detail = "failure", f"{e.detail}: {result.errors[0].message}"[:500]
        await ctx.services.audit.flush(buffer)
