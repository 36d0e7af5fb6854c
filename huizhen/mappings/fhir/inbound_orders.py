"""Inbound: ServiceRequest (a consultation request), ImagingStudy, DocumentReference.

A ServiceRequest is a consultation request only when one of its ``code`` or
``category`` codings is in the table the caller passes (``config/mappings/``
per hospital); any other request is :class:`~.result.Unmapped` (FILTERED).
Its idempotency key (:attr:`Consultation.source_order`) is the placer
identifier (type PLAC) if present, else its first identifier.

Fields of the request:
    reasonCode with a coding   → disease_code / disease_name
    reasonCode with text only  → chief_complaint (else the first note)
    note                       → question
    performerType              → department (else the table's department for the code)
    performer                  → preferred_expert_id (the expert asked for)
    priority                   → urgency
    status                     → starting status (draft → DRAFT, active → PENDING, …)
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.imagingstudy import ImagingStudy as FhirImagingStudy
from fhir.resources.R4B.servicerequest import ServiceRequest

from huizhen.integration.model import (
    Consultation,
    ConsultationStatus,
    Document,
    ImagingInstance,
    ImagingSeries,
    ImagingStudy,
    Urgency,
)
from huizhen.mappings.fhir import datatypes as dt
from huizhen.mappings.fhir import systems, vocab
from huizhen.mappings.fhir.outcome import InvalidResource, IssueType, error, warning
from huizhen.mappings.fhir.references import ref_of
from huizhen.mappings.fhir.result import Content, Link, Mapped, Unmapped, UnmappedReason

# (system, code) pairs; system "" matches a coding without one, "*" any system. A
# Mapping may give each pair a target department, used when performerType is absent.
ConsultationCodes = Collection[tuple[str, str]] | Mapping[tuple[str, str], str | None]


def consultation_code(res: ServiceRequest, codes: ConsultationCodes) -> tuple[str, str] | None:
    """The table entry that makes this request a consultation request, if any."""
    for system, code in dt.codings([res.code] if res.code else []) + dt.codings(res.category):
        for key in ((system or "", code), ("*", code)):
            if key in codes:
                return key
    return None


def consultation(res: ServiceRequest, codes: ConsultationCodes) -> Mapped[Consultation] | Unmapped:
    matched = consultation_code(res, codes)
    if matched is None:
        return Unmapped("ServiceRequest", UnmappedReason.FILTERED, "not a consultation request code", res.id)
    department = dt.text(res.performerType) or (codes.get(matched) if isinstance(codes, Mapping) else None)
    coded = [cc for cc in res.reasonCode or () if dt.coding(cc)]
    disease = dt.coding(coded[0], prefer=(systems.ICD10,)) if coded else None
    complaints = [cc.text for cc in res.reasonCode or () if cc.text and not dt.coding(cc)]
    notes = [n.text for n in res.note or () if n.text]
    placer = [i for i in res.identifier or () if dt.has_type(i, "PLAC")]
    keys = dt.identifiers(placer) or dt.identifiers(res.identifier)
    status = vocab.REQUEST_STATUS_IN.get(res.status or "", ConsultationStatus.PENDING)
    entity = Consultation(
        patient_id="",
        department=department or "",
        urgency=vocab.PRIORITY_URGENCY.get(res.priority or "", Urgency.ROUTINE),
        chief_complaint=complaints[0] if complaints else (notes[0] if notes else ""),
        status=status,
        disease_code=disease.code if disease else None,
        disease_name=disease.display if disease else None,
        question="\n".join(notes) or None,
        source_order=keys[0] if keys else None,
        order_codes=dt.codings_of([res.code] if res.code else []),
        scheduled_at=dt.when(res.occurrenceDateTime),
        created_at=dt.when(res.authoredOn),
        cancel_reason=f"ServiceRequest {res.status}" if status is ConsultationStatus.CANCELLED else None,
    )
    warnings = []
    if entity.source_order is None:
        warnings.append(
            warning(
                IssueType.REQUIRED,
                "no identifier: resending it creates another consultation",
                "ServiceRequest.identifier",
            )
        )
    links: list[Link] = [Link("patient_id", r) for r in [ref_of(res.subject)] if r]
    if (requester := ref_of(res.requester)) is not None:
        slot = "facility_id" if requester.type == "Organization" else "requester_id"
        links.append(Link(slot, requester))
    links += [Link("preferred_expert_id", r) for ref in (res.performer or ())[:1] if (r := ref_of(ref))]
    links += [Link("disease", r) for ref in res.reasonReference or () if (r := ref_of(ref))]
    links += [Link("supporting_info", r) for ref in res.supportingInfo or () if (r := ref_of(ref))]
    links += [Link("encounter", r) for r in [ref_of(res.encounter)] if r]
    return Mapped(entity, "ServiceRequest", res.id, tuple(links), warnings=tuple(warnings))


def imaging_study(res: FhirImagingStudy) -> Mapped[ImagingStudy]:
    """The Study Instance UID is the identifier of system ``urn:dicom:uid``."""
    idents = res.identifier or []
    uid = next((i.value for i in idents if i.system == systems.DICOM_UID and i.value), None)
    if uid is None:
        raise InvalidResource(
            [
                error(
                    IssueType.BUSINESS_RULE,
                    f"no Study Instance UID (identifier system {systems.DICOM_UID})",
                    "ImagingStudy.identifier",
                )
            ]
        )
    accession = next((i.value for i in idents if dt.has_type(i, "ACSN") and i.value), None)
    series = [
        ImagingSeries(
            series_instance_uid=s.uid or "",
            modality=s.modality.code if s.modality else None,
            number=s.number,
            description=s.description,
            body_site=(s.bodySite.display or s.bodySite.code) if s.bodySite else None,
            instances=[
                ImagingInstance(
                    sop_instance_uid=i.uid or "",
                    sop_class_uid=_oid(i.sopClass.code) if i.sopClass and i.sopClass.code else None,
                    number=i.number,
                )
                for i in s.instance or ()
            ],
        )
        for s in res.series or ()
    ]
    entity = ImagingStudy(
        patient_id="",
        study_instance_uid=_oid(uid),
        accession_number=accession,
        description=res.description,
        started_at=dt.when(res.started),
        series=series,
    )
    links = [Link("patient_id", r) for r in [ref_of(res.subject)] if r]
    links += [Link("based_on", r) for ref in res.basedOn or () if (r := ref_of(ref))]
    return Mapped(entity, "ImagingStudy", res.id, tuple(links))


def _oid(value: str) -> str:
    return value.removeprefix("urn:oid:")


def document(res: DocumentReference) -> Mapped[Document]:
    """Text attachments become the document's text; others are handed over as content."""
    texts: list[str] = []
    content: list[Content] = []
    content_type = "text/plain"
    for item in res.content:
        att = item.attachment
        content_type = (att.contentType or content_type).split(";")[0].strip()
        if (body := dt.attachment_text(att.contentType, att.data)) is not None:
            texts.append(body)
        elif att.data is not None or att.url:
            url = str(att.url) if att.url else None
            content.append(Content(att.contentType or "application/octet-stream", att.data, url, att.title))
    first = res.content[0].attachment
    idents = dt.identifiers([res.masterIdentifier] if res.masterIdentifier else [])
    idents += [i for i in dt.identifiers(res.identifier) if i not in idents]
    entity = Document(
        patient_id="",
        title=res.description or first.title or dt.text(res.type) or "Document",
        content_type=content_type,
        text="\n".join(texts) or None,
        identifiers=idents,
        created_at=dt.when(res.date or first.creation),
    )
    links = [Link("patient_id", r) for r in [ref_of(res.subject)] if r]
    if res.context is not None:
        links += [Link("encounter_id", r) for ref in res.context.encounter or () if (r := ref_of(ref))]
        links += [Link("related", r) for ref in res.context.related or () if (r := ref_of(ref))]
    return Mapped(entity, "DocumentReference", res.id, tuple(links), content=tuple(content))
