"""REF^I12 → a consultation request, when its referral (or ordered service) says so.

The consultation codes are looked for in RF1-3 (referral type), RF1-10
(referral reason) and OBR-4; the referral number (RF1-6, else RF1-11, else the
placer order number) is the idempotency key.
"""

from __future__ import annotations

from huizhen.integration.commands import UpsertPatient
from huizhen.integration.model import Identifier, Practitioner

from .consult import complaint, consultation_order, diagnosis, order_codes, request
from .context import MappingContext, MappingResult, Scope
from .datatypes import coding, ei_identifier, person_name
from .errors import MappingError
from .parse import Hl7Message, Segment
from .patient import map_patient, required_segment
from .tables import ErrorCode


def map_referral(message: Hl7Message, context: MappingContext) -> MappingResult:
    scope = Scope(message, context)
    rf1 = required_segment(message, "RF1")
    obrs = message.all("OBR")
    candidates = order_codes([rf1], 3) + order_codes([rf1], 10) + order_codes(obrs, 4)
    entry = consultation_order(candidates, scope)
    if entry is None:
        return scope.filtered(f"referral codes {[c.code for c in candidates]} are not consultation requests")
    patient = map_patient(required_segment(message, "PID"), scope)
    obr = obrs[0] if obrs else None
    pv2 = message.first("PV2")
    command = request(
        scope,
        patient=tuple(patient.identifiers),
        order=_referral_number(rf1, obr, scope),
        department=entry.department or (scope.department(obr.get(24), obr.location(24)) if obr else None),
        department_location=rf1.location(3),
        urgency=scope.urgency(rf1.get(2), rf1.location(2)),
        disease=diagnosis(message.all("DG1"), [pv2.first(3)] if pv2 else []),
        complaint_and_question=complaint(obr.text(13) if obr else "", message.all("NTE"), _reason_text(pv2)),
        requester=_referring_provider(message, scope),
        order_codes=order_codes(obrs, 4) or order_codes([rf1], 3),
    )
    return scope.result([UpsertPatient(patient, scope.facility_code), command])


def _referral_number(rf1: Segment, obr: Segment | None, scope: Scope) -> Identifier:
    for segment, number in ((rf1, 6), (rf1, 11), (obr, 2)):
        found = ei_identifier(segment.first(number), scope.default_system) if segment else None
        if found is not None:
            return found
    raise MappingError(
        "a referral needs a referral number (RF1-6 or RF1-11)",
        code=ErrorCode.REQUIRED_FIELD_MISSING,
        location=rf1.location(6),
    )


def _reason_text(pv2: Segment | None) -> str | None:
    found = coding(pv2.first(3)) if pv2 is not None else None
    return (found.display or found.code) if found else None


def _referring_provider(message: Hl7Message, scope: Scope) -> Practitioner | None:
    """The PRD whose role (PRD-1) is RP, referring provider: name PRD-2, ids PRD-7 (PLN)."""
    for prd in message.all("PRD"):
        if prd.get(1).upper() == "RP":
            name = person_name(prd.repetitions(2))
            ids = [Identifier(scope.default_system(), r.get(1)) for r in prd.repetitions(7) if r.get(1)]
            if name is not None:
                return Practitioner(name=name, identifiers=ids)
    return None
