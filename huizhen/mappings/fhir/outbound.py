"""Outbound: canonical entities → FHIR R4 resources (JSON dicts).

Resource ids are Huizhen's ids, and references point at them
(``Patient/<patient_id>``). Every renderer's output validates with
:func:`~.validate.validate_resource`. Decimals stay :class:`~decimal.Decimal`:
write with :func:`~.jsonio.dumps`. A consultation renders in
:mod:`.outbound_consultation`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from huizhen.integration.model import (
    Document,
    Encounter,
    Facility,
    Identifier,
    ImagingStudy,
    Observation,
    Patient,
    Practitioner,
)
from huizhen.mappings.fhir import render as r
from huizhen.mappings.fhir import systems, vocab
from huizhen.mappings.fhir.render import JSON, compact


def patient(p: Patient) -> JSON:
    return compact(
        {
            "resourceType": "Patient",
            "id": p.id,
            "meta": r.meta(p.updated_at),
            "identifier": r.identifiers(p.identifiers),
            "active": p.merged_into is None,
            "name": r.human_name(p.name),
            "telecom": [{"system": "phone", "value": p.phone}] if p.phone else None,
            "gender": p.gender.value if p.gender else None,
            "birthDate": r.day(p.birth_date) if p.birth_date else None,
            "address": [{"text": p.address}] if p.address else None,
            "managingOrganization": r.reference("Organization", p.facility_id),
            "link": [{"other": r.reference("Patient", p.merged_into), "type": "replaced-by"}]
            if p.merged_into
            else None,
        }
    )


def practitioner(p: Practitioner) -> JSON:
    title = None
    if p.title is not None:
        name = vocab.TITLE_NAMES[p.title]
        title = [{"code": {"coding": [r.coding_of(systems.PRACTITIONER_TITLE, p.title.value, name)], "text": name}}]
    return compact(
        {
            "resourceType": "Practitioner",
            "id": p.id,
            "identifier": r.identifiers(p.identifiers),
            "active": True,
            "name": r.human_name(p.name),
            "qualification": title,
        }
    )


def practitioner_role(p: Practitioner) -> JSON:
    """Where the practitioner works: department (first specialty), specialties, facility."""
    specialties = list(dict.fromkeys([d for d in [p.department] if d] + p.specialties))
    return compact(
        {
            "resourceType": "PractitionerRole",
            "id": p.id,
            "active": True,
            "practitioner": r.reference("Practitioner", p.id, p.name.text or None),
            "organization": r.reference("Organization", p.facility_id),
            "specialty": [{"text": s} for s in specialties],
        }
    )


def organization(f: Facility) -> JSON:
    level = r.coding_of(systems.FACILITY_LEVEL, f.level.value, vocab.LEVEL_NAMES[f.level])
    return compact(
        {
            "resourceType": "Organization",
            "id": f.id,
            "identifier": [{"system": systems.FACILITY_CODE, "value": f.code}],
            "active": True,
            "type": [{"coding": [level]}],
            "name": f.name,
            "address": [{"text": f.region}] if f.region else None,
        }
    )


def encounter(e: Encounter) -> JSON:
    if e.class_code:
        klass = r.coding_of(systems.V3_ACT_CODE, e.class_code)
    else:  # class is 1..1 in R4
        klass = r.coding_of(systems.V3_NULL_FLAVOR, "UNK", "unknown")
    attending = None
    if e.attending_id:
        role = {"coding": [r.coding_of(systems.V3_PARTICIPATION, "ATND", "attender")]}
        attending = [{"type": [role], "individual": r.reference("Practitioner", e.attending_id)}]
    return compact(
        {
            "resourceType": "Encounter",
            "id": e.id,
            "identifier": r.identifiers(e.identifiers),
            "status": vocab.encounter_status(e.status),
            "class": klass,
            "serviceType": r.text_concept(e.department),
            "subject": r.reference("Patient", e.patient_id),
            "participant": attending,
            "period": _period(e.start, e.end),
            "location": [{"location": {"display": e.location}}] if e.location else None,
            "serviceProvider": r.reference("Organization", e.facility_id),
        }
    )


def _period(start: datetime | None, end: datetime | None) -> JSON | None:
    return compact({"start": r.date_time(start) if start else None, "end": r.date_time(end) if end else None}) or None


def observation(o: Observation, components: Sequence[Observation] = ()) -> JSON:
    """One Observation; ``components`` (the parts its inbound mapping produced) go back inside."""
    return compact(
        {
            "resourceType": "Observation",
            "id": o.id,
            "identifier": r.identifiers(o.identifiers),
            "basedOn": [r.reference("ServiceRequest", o.consultation_id)] if o.consultation_id else None,
            "status": vocab.observation_status(o.status),
            "category": [r.concept(c) for c in o.category] or None,
            "code": r.concept(o.code, o.code_text, o.alternate_codes),
            "subject": r.reference("Patient", o.patient_id),
            "encounter": r.reference("Encounter", o.encounter_id),
            "effectiveDateTime": r.date_time(o.effective_at) if o.effective_at else None,
            "issued": r.instant(o.issued) if o.issued else None,
            **_measured(o),
            "component": [
                compact({"code": r.concept(c.code, c.code_text, c.alternate_codes), **_measured(c)})
                for c in components
            ],
        }
    )


def _measured(o: Observation) -> JSON:
    """value[x], interpretation and referenceRange: shared by Observation and its components."""
    found: JSON = {}
    if o.value_quantity is not None:
        found["valueQuantity"] = r.quantity(o.value_quantity, o.unit)
    elif o.value_coding is not None:
        found["valueCodeableConcept"] = r.concept(o.value_coding, more=o.value_alternates)
    elif o.value_string is not None:
        found.update(_text_value(o.value_type, o.value_string, o.unit))
    if o.interpretation:
        found["interpretation"] = [{"coding": [r.coding_of(systems.V3_INTERPRETATION, o.interpretation)]}]
    if (rr := o.reference_range) is not None:
        ranges = compact(
            {
                "low": r.quantity(rr.low, o.unit) if rr.low is not None else None,
                "high": r.quantity(rr.high, o.unit) if rr.high is not None else None,
                "text": rr.text,
            }
        )
        found["referenceRange"] = [ranges] if ranges else None
    return found


_COMPARED = re.compile(r"(<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)")


_PARTIAL_DATE = re.compile(r"\d{4}(-\d{2})?")
_TIME_TYPES = frozenset({"DTM", "DT", "TS"})  # FHIR's valueDateTime, HL7's DT/DTM/TS (v2.3-2.4)


def _text_value(value_type: str | None, value: str, unit: str | None) -> JSON:
    if value_type in _TIME_TYPES:
        if _PARTIAL_DATE.fullmatch(value):  # a year or a month: a dateTime of that precision
            return {"valueDateTime": value}
        try:
            return {"valueDateTime": r.date_time(datetime.fromisoformat(value))}
        except ValueError:
            pass
    if value_type == "SN" and (m := _COMPARED.fullmatch(value.strip())):
        return {"valueQuantity": {**r.quantity(Decimal(m[2]), unit), "comparator": m[1]}}
    return {"valueString": value}


def imaging_study(s: ImagingStudy) -> JSON:
    ids = [{"system": systems.DICOM_UID, "value": f"urn:oid:{s.study_instance_uid}"}]
    if s.accession_number:
        ids.append(r.identifier(_ident(s.accession_number), "ACSN"))
    series = [
        compact(
            {
                "uid": x.series_instance_uid,
                "number": x.number,
                # modality is 1..1 in R4; OT is DICOM's "other"
                "modality": r.coding_of(systems.DICOM_DCM, x.modality or "OT"),
                "description": x.description,
                "numberOfInstances": len(x.instances),
                "bodySite": {"display": x.body_site} if x.body_site else None,
                # sopClass is 1..1 in R4: an instance whose class is unknown cannot be listed
                "instance": [
                    compact(
                        {
                            "uid": i.sop_instance_uid,
                            "sopClass": r.coding_of(systems.URI, f"urn:oid:{i.sop_class_uid}"),
                            "number": i.number,
                        }
                    )
                    for i in x.instances
                    if i.sop_class_uid
                ],
            }
        )
        for x in s.series
    ]
    return compact(
        {
            "resourceType": "ImagingStudy",
            "id": s.id,
            "identifier": ids,
            "status": "available",
            "subject": r.reference("Patient", s.patient_id),
            "started": r.date_time(s.started_at) if s.started_at else None,
            "basedOn": [r.reference("ServiceRequest", s.consultation_id)] if s.consultation_id else None,
            "numberOfSeries": s.series_count,
            "numberOfInstances": s.instance_count,
            "description": s.description,
            "series": series,
        }
    )


def _ident(value: str) -> Identifier:
    return Identifier("", value)


def document(d: Document) -> JSON:
    attachment = compact(
        {
            "contentType": d.content_type if d.text is None else f"{d.content_type}; charset=utf-8",
            "data": r.base64_text(d.text) if d.text is not None else None,
            "title": d.title,
        }
    )
    return compact(
        {
            "resourceType": "DocumentReference",
            "id": d.id,
            "identifier": r.identifiers(d.identifiers),
            "status": "current",
            "subject": r.reference("Patient", d.patient_id),
            "date": r.instant(d.created_at) if d.created_at else None,
            "description": d.title,
            "content": [{"attachment": attachment}],
            "context": {"related": [r.reference("ServiceRequest", d.consultation_id)]} if d.consultation_id else None,
        }
    )
