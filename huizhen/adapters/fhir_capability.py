"""``GET /fhir/metadata``: a CapabilityStatement built from what the edge actually does, for this caller.

Every line here is derived from the tables the edge itself runs on (which
types are mapped, readable, searchable with which parameters, which
conditional operations exist), so the statement cannot drift from the code.
It is then narrowed to what the caller's roles allow (``may``: the same
Casbin check :class:`~.fhir_guard.FhirAccess` makes per request), so a
primary doctor is not told it can create what it would be refused: an
interaction the caller may not use is left out, a type left with none is
left out, and ``transaction``/``batch`` are offered only to who may write.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

from huizhen import __version__
from huizhen.adapters.fhir_read import READABLE
from huizhen.adapters.fhir_search import PARAMETERS
from huizhen.adapters.fhir_write import CONDITIONAL_CREATE, CONDITIONAL_UPDATE
from huizhen.mappings.fhir.inbound import MAPPED_TYPES
from huizhen.mappings.fhir.render import JSON, compact, instant

FORMATS: Final = ["application/fhir+json", "application/json"]
_PARAM_TYPES: Final = {
    "_id": "token", "identifier": "token", "name": "string", "patient": "reference", "subject": "reference",
    "code": "token", "date": "date", "status": "token",
}
_PARAM_NOTES: Final = {
    "name": "Exact match (names are encrypted): the full name, the family name or a given name.",
    "patient": "Patient/<id>, <id> (a Huizhen id or the id the sender gave it) or a URL ending so.",
    "subject": "The same as patient.",
    "code": "[system|]code; several separated by commas.",
    "date": "[eq|ge|gt|le|lt|sa|eb]YYYY[-MM[-DD[Thh:mm:ss+zz:zz]]]; repeat for a range.",
    "status": "The ServiceRequest status a consultation reads as (draft, active, completed, revoked...).",
}
_NEEDS_PATIENT: Final = frozenset({"Encounter", "ImagingStudy"})
_READS: Final = frozenset({"read", "search-type"})
Permits = Callable[[str, str], bool]  # (resource type or "" for a Bundle, "read" | "write") -> allowed


def _everything(resource_type: str, action: str) -> bool:
    return True


_NOTES: Final = {
    "Condition": "Kept as a coded Observation (LOINC 29308-4): created here, read back as Observation.",
    "PractitionerRole": "Merged into the Practitioner it names; read back under the practitioner's id.",
    "ServiceRequest": "Only consultation requests (code in config/mappings/consultation_orders.csv) are taken.",
    "DiagnosticReport": "Kept as a document: identifiers, subject, date and conclusion are read back.",
    "Observation": "Observations are added, not versioned: an update adds the new values.",
}


def capability_statement(base_url: str, published: datetime, may: Permits = _everything) -> JSON:
    """The statement for a caller whose roles permit what ``may`` says (by default: the whole server)."""
    resources = [r for t in sorted(MAPPED_TYPES | READABLE) if (r := _resource(t, may)) is not None]
    whole = [{"code": "transaction"}, {"code": "batch"}] if may("", "write") else []
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant(published),
        "publisher": "Huizhen",
        "kind": "instance",
        "software": {"name": "Huizhen", "version": __version__},
        "implementation": {"description": "Huizhen remote consultation integration server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": FORMATS,
        "rest": [
            {
                "mode": "server",
                "documentation": "Resources are mapped into Huizhen's consultation model and read back from it; "
                "other valid R4 resources in a Bundle are validated and journaled but not kept.",
                "security": {
                    "service": [
                        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                     "code": "OAuth"}]}
                    ],
                    "description": "Authorization: Bearer <JWT issued by Huizhen or its OIDC issuer>",
                },
                **({"resource": resources} if resources else {}),
                **({"interaction": whole} if whole else {}),
            }
        ],
    }


def _resource(resource_type: str, may: Permits) -> JSON | None:
    """The type's entry, or None when the caller may use none of its interactions."""
    codes = []
    if resource_type in READABLE:
        codes.append("read")
    if resource_type in MAPPED_TYPES:
        codes += ["create", "update"]
    if resource_type in PARAMETERS:
        codes.append("search-type")
    codes = [c for c in codes if may(resource_type, "read" if c in _READS else "write")]
    if not codes:
        return None
    searchable, writable = "search-type" in codes, "create" in codes
    params = [compact({"name": p, "type": _PARAM_TYPES[p], "documentation": _PARAM_NOTES.get(p)})
              for p in PARAMETERS.get(resource_type, ()) if searchable]
    note = " ".join(filter(None, (
        _NOTES.get(resource_type),
        "A search needs patient (or subject)." if searchable and resource_type in _NEEDS_PATIENT else None,
    )))
    return compact(
        {
            "type": resource_type,
            "documentation": note,
            "interaction": [{"code": c} for c in codes],
            "versioning": "no-version",
            "readHistory": False,
            "updateCreate": writable,
            "conditionalCreate": writable and resource_type in CONDITIONAL_CREATE,
            "conditionalUpdate": writable and resource_type in CONDITIONAL_UPDATE,
            "conditionalDelete": "not-supported",
            "searchParam": params,
        }
    )
