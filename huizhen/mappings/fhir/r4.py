"""What "FHIR R4" means here, given that fhir.resources carries R4B, not R4.

fhir.resources 8.x ships R5 (package root), R4B (``fhir.resources.R4B``) and
STU3, but no R4 (4.0.1). R4B (4.3.0) is R4 with changes confined to the
medication-definition, evidence-based-medicine and subscription modules; every
resource Huizhen maps (Patient, Practitioner, PractitionerRole, Organization,
Encounter, Observation, ServiceRequest, Condition, DiagnosticReport,
ImagingStudy, DocumentReference, Bundle, OperationOutcome) and every data type
they use is the same in both. So R4 JSON is validated with the R4B models,
with these corrections:

* the resource-type list is R4's: R4B-only types are rejected as not R4;
* R4 types that R4B removed or reworked (:data:`NO_R4_MODEL`) are checked as
  JSON only and reported, never silently accepted as fully validated;
* required code bindings are checked (fhir.resources does not): from the
  models' own value lists when complete, from :data:`REQUIRED_CODES` where the
  generated list is truncated or absent.
"""

from __future__ import annotations

from typing import Final

# in R4, removed or renamed in R4B
R4_ONLY: Final = frozenset(
    {
        "EffectEvidenceSynthesis",
        "RiskEvidenceSynthesis",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
    }
)
# new in R4B: not R4 resource types
R4B_ONLY: Final = frozenset(
    {
        "AdministrableProductDefinition",
        "Citation",
        "ClinicalUseDefinition",
        "EvidenceReport",
        "Ingredient",
        "ManufacturedItemDefinition",
        "MedicinalProductDefinition",
        "NutritionProduct",
        "PackagedProductDefinition",
        "RegulatedAuthorization",
        "SubscriptionStatus",
        "SubscriptionTopic",
        "SubstanceDefinition",
    }
)
# same name in both, structure reworked in R4B: an R4B model would judge R4 JSON wrongly
R4B_REWORKED: Final = frozenset({"Evidence", "EvidenceVariable"})

NO_R4_MODEL: Final = R4_ONLY | R4B_REWORKED

_OBSERVATION_STATUS = (
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
)
_ENCOUNTER_STATUS = (
    "planned",
    "arrived",
    "triaged",
    "in-progress",
    "onleave",
    "finished",
    "cancelled",
    "entered-in-error",
    "unknown",
)
_REPORT_STATUS = (
    "registered",
    "partial",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "appended",
    "cancelled",
    "entered-in-error",
    "unknown",
)
_ISSUE_TYPE = (
    "invalid",
    "structure",
    "required",
    "value",
    "invariant",
    "security",
    "login",
    "unknown",
    "expired",
    "forbidden",
    "suppressed",
    "processing",
    "not-supported",
    "duplicate",
    "multiple-matches",
    "not-found",
    "deleted",
    "too-long",
    "code-invalid",
    "extension",
    "too-costly",
    "business-rule",
    "conflict",
    "transient",
    "lock-error",
    "no-store",
    "exception",
    "timeout",
    "incomplete",
    "throttled",
    "informational",
)

# (element type or backbone class name, JSON property) -> R4 required value set
REQUIRED_CODES: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("Observation", "status"): frozenset(_OBSERVATION_STATUS),
    ("Encounter", "status"): frozenset(_ENCOUNTER_STATUS),
    ("EncounterStatusHistory", "status"): frozenset(_ENCOUNTER_STATUS),
    ("DiagnosticReport", "status"): frozenset(_REPORT_STATUS),
    ("Quantity", "comparator"): frozenset({"<", "<=", ">=", ">"}),
    ("OperationOutcomeIssue", "code"): frozenset(_ISSUE_TYPE),
}

# code elements whose fhir.resources enum_values are wrong: checked by the model only.
# CapabilityStatement.format is bound to BCP 13 media types ("application/fhir+json") or xml | json | ttl;
# the generated list reads the definition's prose ("formats, json, ttl, mime").
OPEN_CODES: Final[frozenset[tuple[str, str]]] = frozenset({("CapabilityStatement", "format")})
