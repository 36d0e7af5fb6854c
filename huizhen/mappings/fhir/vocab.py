"""Fixed vocabularies between FHIR codes and canonical enums, both directions.

These are the standards' and the model's own words, not per-hospital choices
(those live in config/mappings/): titles of Chinese physicians, facility
levels, request priority, and the statuses a consultation shows as FHIR.
"""

from __future__ import annotations

from typing import Final

from huizhen.integration.model import (
    ConsultationStatus,
    FacilityLevel,
    PractitionerTitle,
    Urgency,
)
from huizhen.mappings.fhir import r4

T = PractitionerTitle
TITLE_NAMES: Final = {
    T.CHIEF: "主任医师",
    T.ASSOCIATE_CHIEF: "副主任医师",
    T.ATTENDING: "主治医师",
    T.RESIDENT: "住院医师",
}
_TITLE_WORDS: Final = {
    **{name: title for title, name in TITLE_NAMES.items()},
    **{title.value.lower(): title for title in T},
    "chief physician": T.CHIEF,
    "associate chief physician": T.ASSOCIATE_CHIEF,
    "attending physician": T.ATTENDING,
    "resident physician": T.RESIDENT,
}

L = FacilityLevel
LEVEL_NAMES: Final = {L.PRIMARY: "一级", L.SECONDARY: "二级", L.TERTIARY: "三级"}


def title_of(*words: str | None) -> PractitionerTitle | None:
    """A title from a code or a name (主任医师, ATTENDING, "resident physician")."""
    for word in words:
        if word and (title := _TITLE_WORDS.get(word.strip().lower())):
            return title
    return None


def level_of(*words: str | None) -> FacilityLevel | None:
    """A level from a code (TERTIARY) or a Chinese grade (三级甲等 → TERTIARY)."""
    for word in words:
        if not word:
            continue
        word = word.strip()
        if word.upper() in L.__members__:
            return FacilityLevel(word.upper())
        for level, name in LEVEL_NAMES.items():
            if word.startswith(name):
                return level
    return None


U = Urgency
PRIORITY_URGENCY: Final = {"routine": U.ROUTINE, "urgent": U.URGENT, "asap": U.URGENT, "stat": U.CRITICAL}
URGENCY_PRIORITY: Final = {U.ROUTINE: "routine", U.URGENT: "urgent", U.CRITICAL: "stat"}

S = ConsultationStatus
# ServiceRequest.status as received -> the consultation's starting state
REQUEST_STATUS_IN: Final = {
    "draft": S.DRAFT,
    "active": S.PENDING,
    "on-hold": S.PENDING,
    "completed": S.COMPLETED,
    "revoked": S.CANCELLED,
    "entered-in-error": S.CANCELLED,
}
REQUEST_STATUS_OUT: Final = {
    S.DRAFT: "draft",
    S.PENDING: "active",
    S.ASSIGNED: "active",
    S.IN_PROGRESS: "active",
    S.COMPLETED: "completed",
    S.CANCELLED: "revoked",
}
SESSION_STATUS_OUT: Final = {  # the consultation session as an Encounter
    S.DRAFT: "planned",
    S.PENDING: "planned",
    S.ASSIGNED: "planned",
    S.IN_PROGRESS: "in-progress",
    S.COMPLETED: "finished",
    S.CANCELLED: "cancelled",
}
# Condition.verificationStatus -> the status of the coded observation kept for it
VERIFICATION_STATUS: Final = {
    "confirmed": "final",
    "provisional": "preliminary",
    "differential": "preliminary",
    "unconfirmed": "preliminary",
    "refuted": "cancelled",
    "entered-in-error": "entered-in-error",
}

# Statuses written out must be R4 codes even when a record came from HL7 v2
# (OBX-11 result status) or holds a word FHIR does not know.
_OBSERVATION_STATUS_V2: Final = {
    "F": "final",
    "P": "preliminary",
    "C": "corrected",
    "X": "cancelled",
    "D": "entered-in-error",
    "W": "entered-in-error",
    "R": "registered",
    "I": "registered",
    "S": "preliminary",
    "A": "amended",
}


def observation_status(status: str) -> str:
    if status in r4.REQUIRED_CODES[("Observation", "status")]:
        return status
    return _OBSERVATION_STATUS_V2.get(status.upper(), "unknown")


def encounter_status(status: str) -> str:
    return status if status in r4.REQUIRED_CODES[("Encounter", "status")] else "unknown"
