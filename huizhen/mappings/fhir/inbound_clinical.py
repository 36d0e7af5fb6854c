"""Inbound: Encounter, Observation, Condition, DiagnosticReport.

Observation components: the canonical Observation holds one value, so a FHIR
Observation becomes one canonical Observation for itself (its code, and its
value if it has one: a blood-pressure panel has none) plus one per component
in :attr:`Mapped.parts` (code, value, unit, interpretation and range of the
component; status, time and subject of the parent). Nothing is dropped, and
:func:`~.outbound.observation` puts the parts back as components.

Condition: kept as a coded observation (LOINC 29308-4 "Diagnosis", the
condition's code as the value, status from its verification) so that it is
stored, searchable and attachable to a consultation like any result; a
ServiceRequest naming it in ``reasonReference`` gets its disease code from it
(see :func:`.bundle.resolve_disease`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NamedTuple

from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.encounter import Encounter as FhirEncounter
from fhir.resources.R4B.observation import Observation as FhirObservation
from fhir.resources.R4B.observation import ObservationReferenceRange

from huizhen.integration.model import Coding, Document, Encounter, Observation, ReferenceRange
from huizhen.mappings.fhir import datatypes as dt
from huizhen.mappings.fhir import systems, vocab
from huizhen.mappings.fhir.references import ref_of
from huizhen.mappings.fhir.result import Content, Link, Mapped

_YES_NO = {True: Coding("Y", systems.V2_YES_NO, "Yes"), False: Coding("N", systems.V2_YES_NO, "No")}


def encounter(res: FhirEncounter) -> Mapped[Encounter]:
    period = res.period
    entity = Encounter(
        patient_id="",
        identifiers=dt.identifiers(res.identifier),
        status=res.status or "unknown",
        class_code=res.class_fhir.code if res.class_fhir else None,
        department=dt.text(res.serviceType),
        location=next((loc.location.display for loc in res.location or () if loc.location.display), None),
        start=dt.when(period.start) if period else None,
        end=dt.when(period.end) if period else None,
    )
    links = _links(("patient_id", res.subject), ("facility_id", res.serviceProvider))
    attending = [p for p in res.participant or () if p.individual is not None]
    attending.sort(key=lambda p: not any(c.code == "ATND" for t in p.type or () for c in t.coding or ()))
    if attending and (r := ref_of(attending[0].individual)):
        links += (Link("attending_id", r),)
    return Mapped(entity, "Encounter", res.id, links)


class _Value(NamedTuple):
    type: str | None = None
    quantity: Decimal | None = None
    string: str | None = None
    coding: Coding | None = None
    unit: str | None = None


def _value(obj: Any) -> _Value:
    """value[x] of an Observation or an Observation.component."""
    if (q := obj.valueQuantity) is not None:
        unit = q.code if q.system == systems.UCUM and q.code else (q.unit or q.code)
        if q.comparator and q.value is not None:  # "<0.5" is not 0.5: kept as a structured number
            return _Value("SN", string=f"{q.comparator}{q.value}", unit=unit)
        return _Value("NM", q.value, unit=unit)
    if (cc := obj.valueCodeableConcept) is not None:
        found = dt.coding(cc)
        return _Value("CWE", coding=found) if found else _Value("ST", string=dt.text(cc))
    if obj.valueString is not None:
        return _Value("ST", string=obj.valueString)
    if obj.valueBoolean is not None:
        return _Value("CWE", coding=_YES_NO[obj.valueBoolean])
    if obj.valueInteger is not None:
        return _Value("NM", Decimal(obj.valueInteger))
    if obj.valueDateTime is not None:
        when = dt.when(obj.valueDateTime)
        return _Value("DTM", string=when.isoformat() if when else str(obj.valueDateTime))
    if obj.valueTime is not None:
        return _Value("TM", string=obj.valueTime.isoformat())
    if (r := obj.valueRange) is not None:
        low, high = (x.value if x else None for x in (r.low, r.high))
        unit = (r.low or r.high).unit if (r.low or r.high) else None
        return _Value("SN", string=f"{low if low is not None else ''}-{high if high is not None else ''}", unit=unit)
    if (ratio := obj.valueRatio) is not None and ratio.numerator and ratio.denominator:
        return _Value("SN", string=f"{ratio.numerator.value}:{ratio.denominator.value}")
    return _Value()


def _range(ranges: list[ObservationReferenceRange] | None) -> ReferenceRange | None:
    if not ranges:
        return None
    r = ranges[0]
    return ReferenceRange(low=r.low.value if r.low else None, high=r.high.value if r.high else None, text=r.text)


def _interpretation(obj: Any) -> str | None:
    found = dt.coding(obj.interpretation[0]) if obj.interpretation else None
    return found.code if found else None


def _code(concept: Any) -> Coding:
    found = dt.coding(concept, prefer=(systems.LOINC,))
    if found is not None:
        return found
    label = dt.text(concept) or ""
    return Coding(label, None, label)  # text-only: rendered back as text


def _text_beyond(concept: Any, code: Coding) -> str | None:
    """``concept.text`` where the code's display does not already say it."""
    return concept.text if concept is not None and concept.text and concept.text != code.display else None


def observation(res: FhirObservation) -> Mapped[Observation]:
    effective = (
        res.effectiveDateTime or res.effectiveInstant or (res.effectivePeriod.start if res.effectivePeriod else None)
    )

    def one(source: Any, identifiers: list[Any], **more: Any) -> Observation:
        code, v = _code(source.code), _value(source)
        return Observation(
            patient_id="",
            code=code,
            status=res.status or "unknown",
            value_type=v.type,
            value_quantity=v.quantity,
            value_string=v.string,
            value_coding=v.coding,
            unit=v.unit,
            reference_range=_range(source.referenceRange),
            interpretation=_interpretation(source),
            effective_at=dt.when(effective),
            identifiers=identifiers,
            alternate_codes=dt.alternates(source.code, code),
            code_text=_text_beyond(source.code, code),
            value_alternates=dt.alternates(source.valueCodeableConcept, v.coding),
            **more,
        )

    parent = one(
        res, dt.identifiers(res.identifier), category=dt.codings_of(res.category), issued=dt.when(res.issued)
    )
    parts = tuple(one(c, []) for c in res.component or ())
    links = _links(("patient_id", res.subject), ("encounter_id", res.encounter))
    links += tuple(Link("based_on", r) for ref in res.basedOn or () if (r := ref_of(ref)))
    links += tuple(Link("has_member", r) for ref in res.hasMember or () if (r := ref_of(ref)))
    return Mapped(parent, "Observation", res.id, links, parts)


def condition(res: Condition) -> Mapped[Observation]:
    disease = dt.coding(res.code, prefer=(systems.ICD10,))
    verification = dt.coding(res.verificationStatus)
    status = vocab.VERIFICATION_STATUS.get(verification.code, "final") if verification else "final"
    onset = res.onsetDateTime or (res.onsetPeriod.start if res.onsetPeriod else None)
    entity = Observation(
        patient_id="",
        code=Coding(systems.LOINC_DIAGNOSIS, systems.LOINC, "Diagnosis"),
        status=status,
        value_type="CWE" if disease else "ST",
        value_coding=disease,
        value_string=None if disease else dt.text(res.code),
        value_alternates=dt.alternates(res.code, disease),
        effective_at=dt.when(onset or res.recordedDate),
        identifiers=dt.identifiers(res.identifier),
    )
    links = _links(("patient_id", res.subject), ("encounter_id", res.encounter))
    return Mapped(entity, "Condition", res.id, links)


def diagnostic_report(res: DiagnosticReport) -> Mapped[Document]:
    """A report as a Document: conclusion (and coded conclusions) as its text."""
    lines = [res.conclusion] if res.conclusion else []
    lines += [t for cc in res.conclusionCode or () if (t := dt.text(cc))]
    content: list[Content] = []
    for form in res.presentedForm or ():
        if (body := dt.attachment_text(form.contentType, form.data)) is not None:
            lines.append(body)
        elif form.data is not None or form.url:
            url = str(form.url) if form.url else None
            content.append(Content(form.contentType or "application/octet-stream", form.data, url, form.title))
    effective = res.effectiveDateTime or (res.effectivePeriod.start if res.effectivePeriod else None)
    entity = Document(
        patient_id="",
        title=dt.text(res.code) or "Diagnostic report",
        text="\n".join(lines) or None,
        identifiers=dt.identifiers(res.identifier),
        created_at=dt.when(res.issued or effective),
    )
    links = _links(("patient_id", res.subject), ("encounter_id", res.encounter))
    for slot, refs in (("result", res.result), ("imaging_study", res.imagingStudy), ("based_on", res.basedOn)):
        links += tuple(Link(slot, r) for ref in refs or () if (r := ref_of(ref)))
    return Mapped(entity, "DiagnosticReport", res.id, links, content=tuple(content))


def _links(*pairs: tuple[str, Any]) -> tuple[Link, ...]:
    return tuple(Link(slot, r) for slot, ref in pairs if (r := ref_of(ref)))
