"""ORM^O01 / OMG^O19 → consultation requests (and their cancellations).

An order is a consultation request when its OBR-4 code (or text) is in
consultation_orders.csv; a message with no such order is filtered, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from huizhen.integration.commands import (
    CancelConsultation,
    Command,
    PatientRef,
    UpsertPatient,
)
from huizhen.integration.model import Identifier, Practitioner, Urgency
from huizhen.mappings.codes import ConsultationOrder

from .consult import complaint, consultation_order, diagnosis, order_codes, practitioner, request
from .context import MappingContext, MappingResult, Scope
from .datatypes import ei_identifier
from .errors import ErrorLocation, MappingError
from .parse import Hl7Message, Segment
from .patient import map_patient, required_segment
from .tables import ErrorCode

NEW_ORDER = frozenset({"NW", "XO", "RO"})  # ORC-1 (table 0119): new, changed, replacement
CANCEL_ORDER = frozenset({"CA", "OC", "DC", "OD"})  # cancel / discontinue, requested or done


@dataclass(slots=True)
class _Order:
    orc: Segment | None = None
    obr: Segment | None = None
    timing: Segment | None = None  # TQ1
    notes: list[Segment] = field(default_factory=list)
    diagnoses: list[Segment] = field(default_factory=list)


def map_orders(message: Hl7Message, context: MappingContext) -> MappingResult:
    """Filtering comes first: an order that is no consultation is never mapped further."""
    scope = Scope(message, context)
    orders, diagnoses = _order_groups(message)
    wanted = [(order, entry) for order in orders if (entry := _consultation(order, scope)) is not None]
    if not wanted:
        codes = [c.code for o in orders for c in order_codes(_obr(o), 4)]
        return scope.filtered(f"no consultation request among order codes {codes}")
    patient = map_patient(required_segment(message, "PID"), scope)
    ids = tuple(patient.identifiers)
    commands = [_order_command(order, entry, ids, diagnoses, message, scope) for order, entry in wanted]
    return scope.result([UpsertPatient(patient, scope.facility_code), *commands])


def _consultation(order: _Order, scope: Scope) -> ConsultationOrder | None:
    """The table row when the order is a consultation order placed or cancelled."""
    if _control(order) not in NEW_ORDER | CANCEL_ORDER:
        return None
    return consultation_order(order_codes(_obr(order), 4), scope)


def _control(order: _Order) -> str:
    return order.orc.get(1).upper() if order.orc is not None else "NW"


def _order_groups(message: Hl7Message) -> tuple[list[_Order], list[Segment]]:
    """Orders in message order; DG1 outside any order apply to every order."""
    orders: list[_Order] = []
    loose_diagnoses: list[Segment] = []
    for segment in message:
        name, current = segment.name, orders[-1] if orders else None
        if name == "ORC" or (name == "OBR" and (current is None or current.obr is not None)):
            orders.append(_Order(orc=segment) if name == "ORC" else _Order(obr=segment))
        elif name == "OBR" and current is not None:
            current.obr = segment
        elif name == "TQ1" and current is not None and current.timing is None:
            current.timing = segment
        elif name == "NTE" and current is not None and current.obr is not None:
            current.notes.append(segment)
        elif name == "DG1":
            (current.diagnoses if current is not None else loose_diagnoses).append(segment)
    return orders, loose_diagnoses


def _order_command(
    order: _Order,
    entry: ConsultationOrder,
    patient: PatientRef,
    diagnoses: list[Segment],
    message: Hl7Message,
    scope: Scope,
) -> Command:
    source = _placer_order(order, scope)
    control = _control(order)
    if control in CANCEL_ORDER and order.orc is not None:
        reason = order.orc.get(16, 2) or order.orc.get(16)
        return CancelConsultation(source, reason or f"order cancelled by its placer (ORC-1 {control})")
    obr = order.obr
    pv2 = message.first("PV2")
    return request(
        scope,
        patient=patient,
        order=source,
        department=entry.department or _obr_department(obr, scope),
        department_location=ErrorLocation("OBR", obr.sequence if obr else 1, 24),
        urgency=_urgency(order, scope),
        disease=diagnosis(order.diagnoses or diagnoses, obr.repetitions(31) if obr else []),
        complaint_and_question=complaint(obr.text(13) if obr else "", order.notes, pv2.get(3, 2) if pv2 else None),
        requester=_requester(order, scope),
        order_codes=order_codes(_obr(order), 4),
    )


def _placer_order(order: _Order, scope: Scope) -> Identifier:
    for segment in (order.orc, order.obr):
        found = ei_identifier(segment.first(2), scope.default_system) if segment else None
        if found is not None:
            return found
    segment = order.orc or order.obr
    raise MappingError(
        "a consultation order needs a placer order number (ORC-2 or OBR-2)",
        code=ErrorCode.REQUIRED_FIELD_MISSING,
        location=segment.location(2) if segment else ErrorLocation("ORC", 1, 2),
    )


def _urgency(order: _Order, scope: Scope) -> Urgency:
    """TQ1-9, else ORC-7.6 / OBR-27.6 (TQ priority), else OBR-5: the first one given."""
    sources = [(order.timing, 9, 1), (order.orc, 7, 6), (order.obr, 27, 6), (order.obr, 5, 1)]
    for segment, number, component in sources:
        if segment is not None and segment.get(number, component):
            location = segment.location(number, component)
            return scope.urgency(segment.get(number, component), location)
    return Urgency.ROUTINE


def _obr_department(obr: Segment | None, scope: Scope) -> str | None:
    return scope.department(obr.get(24), obr.location(24)) if obr is not None else None


def _requester(order: _Order, scope: Scope) -> Practitioner | None:
    for segment, number in ((order.orc, 12), (order.obr, 16)):
        if segment is not None and segment.first(number):
            return practitioner(segment.first(number), scope)
    return None


def _obr(order: _Order) -> list[Segment]:
    return [order.obr] if order.obr is not None else []
