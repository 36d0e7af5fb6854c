"""Authorization and audit at the FHIR edge: one role check per request, row rules on what it returns.

The role check is (resource type → object) × (interaction → action):
reads and searches are ``read``, creates, updates and Bundles are ``write``.
A denial is 403 with a ``forbidden`` issue; it depends only on the roles and
the request, never on which rows exist. A resource the viewer may not see is
treated like one that does not exist: a read answers 404, a search leaves it
out: searches filter by the viewer's patients in SQL (:meth:`FhirAccess.patient_rows`), so ``Bundle.total``
and every page count only visible resources. Visibility follows the patient a
resource belongs to (:mod:`huizhen.rbac.rows`: a HIS system account sees its
facility's patients and consultations, so it reads back what it sent), except
that what a consultation reads as (its ServiceRequest, session Encounter and
report) follows the consultation rule, as in GraphQL: an expert who sees a
patient through one consultation does not see that patient's other ones.
Every read resource, every write and every denial is one audit event; the
events of a request are written together when it ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from starlette.requests import Request

from huizhen.adapters.fhir_errors import FhirHttpError
from huizhen.integration.repo.visibility import ConsultationRows, PatientRows
from huizhen.integration.store import Store
from huizhen.mappings.fhir.outcome import IssueType
from huizhen.mappings.fhir.render import JSON
from huizhen.rbac.audit import DENIED, FAILURE, SUCCESS, AuditBuffer, AuditLog
from huizhen.rbac.enforcer import Authorizer
from huizhen.rbac.identity import Principal
from huizhen.rbac.rows import PLATFORM, Scope
from huizhen.rbac.viewer import resolve_scope

OBJECT_OF: Final = {
    "Patient": "patient",
    "Practitioner": "directory", "PractitionerRole": "directory", "Organization": "directory",
    "Encounter": "consultation", "ServiceRequest": "consultation",
    "Observation": "observation", "Condition": "observation", "DiagnosticReport": "observation",
    "DocumentReference": "observation",
    "ImagingStudy": "study",
}
_BUNDLE_OBJECT: Final = "patient"  # a transaction or batch at the base writes patient data
_DIRECTORY: Final = frozenset(t for t, o in OBJECT_OF.items() if o == "directory")
_CONSULTATION_VIEWS: Final = frozenset({"ServiceRequest", "Encounter", "DiagnosticReport"})  # read by its id


@dataclass
class FhirAccess:
    """One request's viewer: roles in its domain, the row scope (resolved on first need), the audit buffer."""

    guard: FhirGuard
    principal: Principal
    roles: frozenset[str]
    buffer: AuditBuffer
    _scope: Scope | None = None
    _patients: dict[str, bool] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return self.principal.facility or PLATFORM

    def permits(self, resource_type: str, action: str) -> bool:
        """Whether the roles allow ``action`` ("read" or "write") on a type ("" for a Bundle); nothing audited."""
        obj = OBJECT_OF.get(resource_type, _BUNDLE_OBJECT)
        return self.guard.authorizer.allowed(self.roles, self.domain, obj, action)

    def require(self, resource_type: str | None, method: str) -> None:
        action = "read" if method == "GET" else "write"
        if self.permits(resource_type or "", action):
            return
        self.buffer.add(action, resource_type or "Bundle", None, DENIED, detail=f"{method} {resource_type or ''}")
        raise FhirHttpError(403, IssueType.FORBIDDEN, f"{', '.join(sorted(self.roles)) or 'no role'} in "
                                                      f"{self.domain} may not {action} {resource_type or 'Bundle'}")

    async def patient_rows(self) -> PatientRows:
        """The viewer's patients as a SQL filter, so that searches page and count only what it may see."""
        return (await self._resolved_scope()).patient_rows()

    async def consultation_rows(self) -> ConsultationRows:
        return (await self._resolved_scope()).consultation_rows()

    async def visible(self, resource: JSON) -> bool:
        kind = str(resource.get("resourceType", ""))
        if kind in _DIRECTORY:
            return True
        resource_id = str(resource.get("id", ""))
        if kind in _CONSULTATION_VIEWS and (seen_as_consultation := await self._sees_consultation(resource_id)) \
                is not None:
            seen = seen_as_consultation
        else:
            patient_id = resource_id if kind == "Patient" else _patient_of(resource)
            if not patient_id:
                return False
            if patient_id not in self._patients:
                self._patients[patient_id] = await self._sees_patient(patient_id)
            seen = self._patients[patient_id]
        if seen:
            self.buffer.add("read", kind, resource_id or None)
        return seen

    async def _sees_consultation(self, consultation_id: str) -> bool | None:
        """Whether the viewer sees this consultation; None when the id is no consultation's."""
        scope = await self._resolved_scope()
        async with self.guard.store.read() as repo:
            consultation = await repo.consultations.get(consultation_id) if consultation_id else None
        return None if consultation is None else scope.sees_consultation(consultation)

    async def _resolved_scope(self) -> Scope:
        if self._scope is None:
            self._scope = await resolve_scope(self.guard.store, self.principal, self.roles)
        return self._scope

    async def _sees_patient(self, patient_id: str) -> bool:
        scope = await self._resolved_scope()
        async with self.guard.store.read() as repo:
            patient = await repo.patients.get(patient_id)
            if patient is None:
                return False
            if scope.sees_patient(patient):
                return True
            return scope.sees_patient(patient, await repo.consultations.for_patients([patient_id]))

    def wrote(self, method: str, path: str, status: int) -> None:
        self.buffer.add("write", path.split("/")[0].split("?")[0] or "Bundle", None,
                        SUCCESS if status < 400 else FAILURE, detail=f"{method} {path or '/'} -> {status}")


class FhirGuard:
    def __init__(self, authorizer: Authorizer, store: Store, audit: AuditLog) -> None:
        self.authorizer, self.store, self.audit = authorizer, store, audit

    def access(self, request: Request, principal: Principal) -> FhirAccess:
        domain = principal.facility or PLATFORM
        roles = self.authorizer.roles_of(principal.sub, principal.roles, domain)
        peer = f"{request.client.host}:{request.client.port}" if request.client else None
        return FhirAccess(self, principal, roles, AuditBuffer(principal.sub, sorted(roles), peer, domain=domain))

    async def flush(self, access: FhirAccess) -> None:
        await self.audit.flush(access.buffer)


def _patient_of(resource: JSON) -> str | None:
    for key in ("subject", "patient"):
        ref = resource.get(key)
        if isinstance(ref, dict):
            value = str(ref.get("reference", ""))
            if value.startswith("Patient/"):
                return value.removeprefix("Patient/")
    return None
