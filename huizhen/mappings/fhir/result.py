"""What an inbound mapper returns: canonical entities plus what still needs the engine.

A mapper never looks anything up. Where a canonical field holds another
entity's id (``Observation.patient_id``), the mapper leaves a placeholder
(``""`` or None) and records a :class:`Link` from that field's name to the
FHIR :class:`~.references.Ref`; the engine resolves it and fills the field.
Multi-valued relations that have no canonical field (a DiagnosticReport's
results) are links too, under descriptive slot names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from huizhen.integration.model import Identifier
from huizhen.mappings.fhir.outcome import Issue
from huizhen.mappings.fhir.references import Ref

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Link:
    slot: str  # a canonical field ("patient_id") or a relation name ("result")
    ref: Ref


@dataclass(frozen=True, slots=True)
class Content:
    """An attachment the engine may store (object store) and link to the entity."""

    content_type: str
    data: bytes | None = None
    url: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class PractitionerRoleInfo:
    """A PractitionerRole: facts to merge into the Practitioner it points at."""

    department: str | None = None
    specialties: tuple[str, ...] = ()
    identifiers: tuple[Identifier, ...] = ()


@dataclass(slots=True)
class Mapped(Generic[E]):
    entity: E
    resource_type: str  # the FHIR type it came from
    fhir_id: str | None = None  # the sender's logical id, for later relative references
    links: tuple[Link, ...] = ()
    parts: tuple[E, ...] = ()  # Observation.component, one canonical Observation each
    content: tuple[Content, ...] = ()
    warnings: tuple[Issue, ...] = field(default_factory=tuple)

    def ref(self, slot: str) -> Ref | None:
        return next((link.ref for link in self.links if link.slot == slot), None)

    def refs(self, slot: str) -> tuple[Ref, ...]:
        return tuple(link.ref for link in self.links if link.slot == slot)


class UnmappedReason(enum.StrEnum):
    NOT_SUPPORTED = "not-supported"  # a resource type Huizhen does not map
    FILTERED = "filtered"  # a mapped type whose content is not for Huizhen
    NOT_VALIDATED = "not-validated"  # no R4 model to read it with


@dataclass(frozen=True, slots=True)
class Unmapped:
    resource_type: str
    reason: UnmappedReason
    detail: str
    fhir_id: str | None = None
