"""Row-level rules: which consultations and patients a viewer may see.

The role check (Casbin) says whether a role may read consultations at all;
these rules say which ones. They are the DESIGN.md rule, written once and
used by every edge (GraphQL queries and subscriptions, FHIR, signaling):

* an expert sees the consultations assigned to them and the PENDING queue of
  their own department;
* a primary doctor (and a HIS system account) sees their facility's;
* a patient sees their own;
* a coordinator with the platform-wide domain sees every consultation, one
  bound to a facility sees that facility's;
* everyone else (integration admin, security officer, auditor) sees no
  clinical rows;
* beyond these, a clinician holding a valid break-glass grant
  (:mod:`huizhen.rbac.breakglass`) sees that patient and their consultations.

A :class:`Scope` is resolved once per request or per subscription from the
token's claims plus the directory (the expert's department, the facility id
behind the facility code), so the checks themselves are pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from huizhen.integration.model import Consultation, ConsultationStatus, Patient
from huizhen.integration.repo.visibility import ConsultationRows, PatientRows
from huizhen.rbac.identity import Principal

PLATFORM = "*"
BREAK_GLASS_ROLES = frozenset({"primary_doctor", "expert"})  # the clinicians who may break the glass


@dataclass(frozen=True, slots=True)
class Scope:
    sub: str
    roles: frozenset[str]
    facility_code: str | None = None
    facility_id: str | None = None  # the id behind facility_code, when it names a known facility
    department: str | None = None  # an expert's department, from the directory
    break_glass: frozenset[str] = frozenset()  # patient ids of the viewer's unexpired break-glass grants

    @classmethod
    def of(
        cls, principal: Principal, *, facility_id: str | None = None, department: str | None = None
    ) -> Scope:
        return cls(
            sub=principal.sub,
            roles=frozenset(principal.roles),
            facility_code=principal.facility,
            facility_id=facility_id,
            department=department,
        )

    @property
    def platform_wide(self) -> bool:
        return self.facility_code in (None, PLATFORM)

    def sees_consultation(self, c: Consultation) -> bool:
        r = self.roles
        if c.patient_id in self.break_glass:
            return True
        if "coordinator" in r and (self.platform_wide or c.facility_id == self.facility_id):
            return True
        if "expert" in r and (
            c.expert_id == self.sub
            or (c.status is ConsultationStatus.PENDING and self.department is not None
                and c.department == self.department)
        ):
            return True
        if r & {"primary_doctor", "his_system"} and (
            c.requester_id == self.sub or (self.facility_id is not None and c.facility_id == self.facility_id)
        ):
            return True
        return "patient" in r and c.patient_id == self.sub

    def sees_patient(self, p: Patient, consultations: Iterable[Consultation] = ()) -> bool:
        """A patient is visible to whoever may see their facility's records or one of their consultations."""
        r = self.roles
        if p.id in self.break_glass or ("patient" in r and p.id == self.sub):
            return True
        if "coordinator" in r and self.platform_wide:
            return True
        if r & {"primary_doctor", "his_system", "coordinator"} and (
            self.facility_id is not None and p.facility_id == self.facility_id
        ):
            return True
        return any(self.sees_consultation(c) for c in consultations)

    # the same rules as SQL filters (huizhen.integration.repo.visibility), for list queries and their totals

    def consultation_rows(self) -> ConsultationRows:
        r = self.roles
        if "coordinator" in r and self.platform_wide:
            return ConsultationRows(everything=True)
        facilities: set[str] = set()
        if self.facility_id is not None and r & {"coordinator", "primary_doctor", "his_system"}:
            facilities.add(self.facility_id)
        expert = "expert" in r
        return ConsultationRows(
            facility_ids=tuple(sorted(facilities)),
            expert_id=self.sub if expert else None,
            queue_department=self.department if expert else None,
            requester_id=self.sub if r & {"primary_doctor", "his_system"} else None,
            patient_id=self.sub if "patient" in r else None,
            patient_ids=tuple(sorted(self.break_glass)),
        )

    def patient_rows(self) -> PatientRows:
        r = self.roles
        if "coordinator" in r and self.platform_wide:
            return PatientRows(everything=True)
        facilities = (
            (self.facility_id,)
            if self.facility_id is not None and r & {"primary_doctor", "his_system", "coordinator"} else ()
        )
        return PatientRows(
            patient_id=self.sub if "patient" in r else None,
            facility_ids=facilities,
            via=self.consultation_rows(),
            patient_ids=tuple(sorted(self.break_glass)),
        )
