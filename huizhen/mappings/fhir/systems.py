"""Code systems, identifier systems and extension URLs, named once.

External systems are the standards' own URIs. Huizhen's own systems live under
:data:`HUIZHEN_BASE`, a placeholder canonical base that a deployment may change
before it publishes profiles (the value only has to be stable, not resolvable).
"""

from __future__ import annotations

from typing import Final

# standards
LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
UCUM: Final = "http://unitsofmeasure.org"
ICD10: Final = "http://hl7.org/fhir/sid/icd-10"
DICOM_UID: Final = "urn:dicom:uid"
DICOM_DCM: Final = "http://dicom.nema.org/resources/ontology/DCM"
URI: Final = "urn:ietf:rfc:3986"
V3_ACT_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_NULL_FLAVOR: Final = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
V3_INTERPRETATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V3_PARTICIPATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V2_IDENTIFIER_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_YES_NO: Final = "http://terminology.hl7.org/CodeSystem/v2-0136"
CONDITION_VERIFICATION: Final = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

# well-known codes
LOINC_DIAGNOSIS: Final = "29308-4"  # Diagnosis (a Condition kept as a coded observation)
LOINC_CONSULT_NOTE: Final = "11488-4"  # Consult note (the expert's conclusion)
SNOMED_CONSULTATION: Final = "11429006"  # Consultation (procedure)

# Huizhen's own
HUIZHEN_BASE: Final = "https://huizhen.example.org/fhir"
CONSULTATION_NUMBER: Final = f"{HUIZHEN_BASE}/sid/consultation-number"
FACILITY_CODE: Final = f"{HUIZHEN_BASE}/sid/facility-code"
FACILITY_LEVEL: Final = f"{HUIZHEN_BASE}/CodeSystem/facility-level"
PRACTITIONER_TITLE: Final = f"{HUIZHEN_BASE}/CodeSystem/practitioner-title"
EXT_FACILITY_LEVEL: Final = f"{HUIZHEN_BASE}/StructureDefinition/facility-level"

# UCUM codes common in consultation data whose code is also the usual display,
# so a bare canonical unit string may be rendered with system and code.
UCUM_COMMON: Final = frozenset(
    {
        "%",
        "/min",
        "{beats}/min",
        "{breaths}/min",
        "Cel",
        "[degF]",
        "cm",
        "m",
        "mm",
        "g",
        "kg",
        "kg/m2",
        "mg",
        "ug",
        "L",
        "mL",
        "dL",
        "mm[Hg]",
        "mmol/L",
        "umol/L",
        "nmol/L",
        "mg/dL",
        "g/dL",
        "g/L",
        "mg/L",
        "U/L",
        "10*9/L",
        "10*12/L",
        "fL",
        "pg",
        "s",
        "min",
        "h",
        "d",
        "a",
        "mo",
        "wk",
        "mL/min",
        "mEq/L",
        "ng/mL",
        "pg/mL",
        "mIU/mL",
        "[iU]/L",
    }
)
