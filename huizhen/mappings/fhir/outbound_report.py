"""Outbound: a stored Document read as a FHIR DiagnosticReport.

A DiagnosticReport that arrived is kept as a Document (its conclusion as the
text, its code's text as the title): read back, it keeps its identifiers,
subject, date and conclusion; the report code's codings are not kept by the
canonical Document, so ``code`` is text only.
"""

from __future__ import annotations

from huizhen.integration.model import Document
from huizhen.mappings.fhir import render as r
from huizhen.mappings.fhir.render import JSON, compact


def diagnostic_report(d: Document) -> JSON:
    return compact(
        {
            "resourceType": "DiagnosticReport",
            "id": d.id,
            "identifier": r.identifiers(d.identifiers),
            "basedOn": [r.reference("ServiceRequest", d.consultation_id)] if d.consultation_id else None,
            "status": "final",
            "code": {"text": d.title},
            "subject": r.reference("Patient", d.patient_id),
            "issued": r.instant(d.created_at) if d.created_at else None,
            "conclusion": d.text,
        }
    )
