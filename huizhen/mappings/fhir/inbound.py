"""Inbound registry: a validated FHIR resource → its canonical mapping.

:func:`map_resource` is the one entry point: a :class:`~.result.Mapped` for the
types below, an :class:`~.result.Unmapped` for everything else (the FHIR edge
answers ``not-supported``; inside a Bundle the entry is reported as
``information`` and not applied). Mapping problems that make a resource unusable
(an ImagingStudy without a Study Instance UID) raise
:class:`~.outcome.InvalidResource`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from huizhen.mappings.fhir import inbound_admin, inbound_clinical, inbound_orders
from huizhen.mappings.fhir.inbound_orders import ConsultationCodes
from huizhen.mappings.fhir.models import Model
from huizhen.mappings.fhir.result import Mapped, Unmapped, UnmappedReason
from huizhen.mappings.fhir.validate import Validated

_MAPPERS: Final[dict[str, Callable[[Any], Mapped[Any]]]] = {
    "Patient": inbound_admin.patient,
    "Practitioner": inbound_admin.practitioner,
    "PractitionerRole": inbound_admin.practitioner_role,
    "Organization": inbound_admin.facility,
    "Encounter": inbound_clinical.encounter,
    "Observation": inbound_clinical.observation,
    "Condition": inbound_clinical.condition,
    "DiagnosticReport": inbound_clinical.diagnostic_report,
    "ImagingStudy": inbound_orders.imaging_study,
    "DocumentReference": inbound_orders.document,
}
MAPPED_TYPES: Final = frozenset({*_MAPPERS, "ServiceRequest"})


def is_mapped(resource_type: str) -> bool:
    return resource_type in MAPPED_TYPES


def map_resource(
    resource: Validated | Model, *, consultation_codes: ConsultationCodes = frozenset()
) -> Mapped[Any] | Unmapped:
    """``consultation_codes``: (system, code) pairs that make a ServiceRequest a consultation."""
    if isinstance(resource, Validated):
        if resource.model is None:
            return Unmapped(
                resource.resource_type,
                UnmappedReason.NOT_VALIDATED,
                f"{resource.resource_type} has no R4 model to map from",
                resource.id,
            )
        model = resource.model
    else:
        model = resource
    resource_type = model.get_resource_type()
    if resource_type == "ServiceRequest":
        return inbound_orders.consultation(model, consultation_codes)  # type: ignore[arg-type]
    mapper = _MAPPERS.get(resource_type)
    if mapper is None:
        return Unmapped(
            resource_type,
            UnmappedReason.NOT_SUPPORTED,
            f"{resource_type} is not mapped by Huizhen",
            getattr(model, "id", None),
        )
    return mapper(model)
