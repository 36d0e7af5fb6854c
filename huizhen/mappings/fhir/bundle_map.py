"""Map a parsed Bundle's entries, in dependency order, and join what the Bundle itself answers.

Pure: no entity is looked up. What can be settled inside the Bundle is: a
consultation request whose ``reasonReference`` names a Condition entry takes
its disease code from it. Everything else the engine resolves, using
:meth:`.bundle.ParsedBundle.resolve` to find which entry (and so which mapped
entity) a reference names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from huizhen.integration.model import Consultation, Observation
from huizhen.mappings.fhir import systems
from huizhen.mappings.fhir.bundle import APPLIED_METHODS, BundleEntry, ParsedBundle
from huizhen.mappings.fhir.inbound import map_resource
from huizhen.mappings.fhir.inbound_orders import ConsultationCodes
from huizhen.mappings.fhir.outcome import InvalidResource, Issue
from huizhen.mappings.fhir.result import Mapped, Unmapped


@dataclass(frozen=True, slots=True)
class MappedEntry:
    entry: BundleEntry
    result: Mapped[Any] | Unmapped | None  # None: the entry has errors or asks for another method
    issues: tuple[Issue, ...]  # the entry's issues and the mapping's

    @property
    def ok(self) -> bool:
        return not any(issue.blocking for issue in self.issues)


def map_bundle(bundle: ParsedBundle, *, consultation_codes: ConsultationCodes = frozenset()) -> list[MappedEntry]:
    """One :class:`MappedEntry` per entry, referenced entries first (``bundle.order``)."""
    by_index: dict[int, MappedEntry] = {}
    for n in bundle.order:
        by_index[n] = _map(bundle.entries[n], consultation_codes)
    for item in by_index.values():
        if isinstance(item.result, Mapped) and isinstance(item.result.entity, Consultation):
            _disease_from_bundle(item.result, bundle, by_index)
    return [by_index[n] for n in bundle.order]


def _map(entry: BundleEntry, codes: ConsultationCodes) -> MappedEntry:
    carried_out = entry.method is None or entry.method in APPLIED_METHODS
    if entry.resource is None or not entry.ok or not carried_out:
        return MappedEntry(entry, None, entry.issues)
    try:
        result = map_resource(entry.resource, consultation_codes=codes)
    except InvalidResource as exc:
        return MappedEntry(entry, None, (*entry.issues, *_at_entry(exc.issues, entry)))
    warnings = result.warnings if isinstance(result, Mapped) else ()
    return MappedEntry(entry, result, (*entry.issues, *_at_entry(warnings, entry)))


def _at_entry(issues: Sequence[Issue], entry: BundleEntry) -> list[Issue]:
    """Mapper issues name ``Type.element``; inside a Bundle they belong under the entry."""
    prefix = f"{entry.path}.resource"
    moved = []
    for issue in issues:
        paths = tuple(prefix + p[p.index(".") :] if "." in p else prefix for p in issue.expression)
        moved.append(Issue(issue.severity, issue.code, issue.diagnostics, paths))
    return moved


def _disease_from_bundle(request: Mapped[Consultation], bundle: ParsedBundle, by_index: dict[int, MappedEntry]) -> None:
    consultation = request.entity
    if consultation.disease_code:
        return
    for ref in request.refs("disease"):
        target = bundle.resolve(ref.url) if ref.url else None
        found = by_index.get(target) if target is not None else None
        if found is None or not isinstance(found.result, Mapped):
            continue
        diagnosis = found.result.entity
        if isinstance(diagnosis, Observation) and diagnosis.code.code == systems.LOINC_DIAGNOSIS:
            if diagnosis.value_coding is not None:
                consultation.disease_code = diagnosis.value_coding.code
                consultation.disease_name = diagnosis.value_coding.display
                return
