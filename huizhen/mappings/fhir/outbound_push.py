"""A completed consultation as the HIS that asked for it can take it: its Encounter and DiagnosticReport,
with every reference the HIS cannot resolve rewritten or left out.

Huizhen's ids mean nothing to a HIS. So a reference to the patient becomes a
logical reference by the patient's identifier (the HIS's own MRN when Huizhen
has it from that facility, else the first one); people and the facility
become display-only references; references to Huizhen-only resources
(the ServiceRequest, observations, studies) are left out. The Encounter keeps
its id, and the report its reference to it: both are written with PUT.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huizhen.integration.model import Consultation, Patient
from huizhen.mappings.fhir import render as r
from huizhen.mappings.fhir.outbound_consultation import consultation as consultation_resources
from huizhen.mappings.fhir.render import JSON

_DROP = object()


def for_his(c: Consultation, patient: Patient, names: Mapping[str, str], his_system: str | None = None) -> list[JSON]:
    """``names``: display text by ``Type/id`` (practitioners, the facility); ``his_system``: the HIS's MRN system."""
    ident = next((i for i in patient.identifiers if his_system and i.system == his_system), None)
    ident = ident or (patient.identifiers[0] if patient.identifiers else None)
    subject: JSON = {"display": patient.name.text} if patient.name.text else {}
    if ident is not None:
        subject = {"identifier": r.identifier(ident), **subject}
    rewrites: dict[str, JSON] = {f"Patient/{c.patient_id}": {"type": "Patient", **subject}}
    rewrites |= {ref: {"display": text} for ref, text in names.items() if text}
    rendered = consultation_resources(c)
    keep = {f"Encounter/{c.id}"}
    out = []
    for resource in (rendered.session, rendered.report):
        if resource is not None:
            out.append(_rewrite(resource, rewrites, keep))
    return out


def _rewrite(node: Any, rewrites: Mapping[str, JSON], keep: set[str]) -> Any:
    if isinstance(node, list):
        items = [_rewrite(x, rewrites, keep) for x in node]
        return [x for x in items if x is not _DROP]
    if not isinstance(node, dict):
        return node
    ref = node.get("reference")
    if isinstance(ref, str):
        if ref in keep:
            return node
        return dict(rewrites[ref]) if ref in rewrites else _DROP
    out = {}
    for key, value in node.items():
        rewritten = _rewrite(value, rewrites, keep)
        if rewritten is not _DROP and rewritten != []:
            out[key] = rewritten
    return out
