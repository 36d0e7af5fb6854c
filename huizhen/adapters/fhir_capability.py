"""``GET /fhir/metadata``: a CapabilityStatement built from what the edge actually does.

Every line here is derived from the tables the edge itself runs on (which
types are mapped, readable, searchable with which parameters, which
conditional operations exist), so the statement cannot drift from the code.
"""

from __future__ import annotations

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
_NOTES: Final = {
    "Condition": "Kept as a coded Observation (LOINC 29308-4): created here, read back as Observation.",
    "PractitionerRole": "Merged into the Practitioner it names; read back under the practitioner's id.",
    "ServiceRequest": "Only consultation requests (code in config/mappings/consultation_orders.csv) are taken.",
    "DiagnosticReport": "Kept as a document: identifiers, subject, date and conclusion are read back.",
    "Observation": "Observations are added, not versioned: an update adds the new values.",
}


def capability_statement(base_url: str, published: datetime) -> JSON:
    resources = [_resource(t) for t in sorted(MAPPED_TYPES | READABLE)]
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
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }


def _resource(resource_type: str) -> JSON:
    codes = []
    if resource_type in READABLE:
        codes.append("read")
    if resource_type in MAPPED_TYPES:
        codes += ["create", "update"]
    if resource_type in PARAMETERS:
        codes.append("search-type")
    params = [{"name": p, "type": _PARAM_TYPES[p]} for p in PARAMETERS.get(resource_type, ())]
    return compact(
        {
            "type": resource_type,
            "documentation": _NOTES.get(resource_type),
            "interaction": [{"code": c} for c in codes],
            "versioning": "no-version",
            "readHistory": False,
            "updateCreate": resource_type in MAPPED_TYPES,
            "conditionalCreate": resource_type in CONDITIONAL_CREATE,
            "conditionalUpdate": resource_type in CONDITIONAL_UPDATE,
            "conditionalDelete": "not-supported",
            "searchParam": params,
        }
    )
