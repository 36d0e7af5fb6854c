"""The HL7 v2 inbound channel: MLLP frames → the engine, with HL7 ACKs back.

``Hl7Codec`` is what the engine is handed for HL7: parse (python-hl7, on the
hot path), look up the mapper by MSH-9, map, and write ACKs in the message's
own delimiters and charset. ``MllpInbound`` is the MLLP server's handler: it
passes each frame to the engine and returns the ACK; it never touches the
store itself.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from huizhen.adapters.mllp import PeerInfo, RejectReason
from huizhen.integration.engine import Codec, Identity, Inbound, InboundEngine, Mapped, Outcome
from huizhen.integration.errors import HuizhenError
from huizhen.mappings.hl7v2 import ack as hl7_ack
from huizhen.mappings.hl7v2.acknowledgement import is_acknowledgement
from huizhen.mappings.hl7v2.context import MappingContext
from huizhen.mappings.hl7v2.errors import ErrorDetail, ErrorLocation, Hl7Error, Rejected
from huizhen.mappings.hl7v2.header import salvage_header
from huizhen.mappings.hl7v2.parse import Hl7Message, parse_message
from huizhen.mappings.hl7v2.registry import MapperRegistry
from huizhen.mappings.hl7v2.tables import SUPPORTED_VERSIONS, AckCode, ErrorCode, Severity
from huizhen.mappings.hl7v2.validate import validate_structure

log = logging.getLogger(__name__)

CHANNEL = "mllp"


class Hl7Codec:
    channel = CHANNEL

    def __init__(
        self, registry: MapperRegistry, context: MappingContext, *,
        processing_id: str | None = None, versions: Collection[str] = SUPPORTED_VERSIONS,
        validate_senders: Collection[str] = (),
    ) -> None:
        self.registry = registry
        self.context = context
        self.processing_id = processing_id
        self.versions = versions
        self.validate_senders = frozenset(validate_senders)  # MSH-4, or MSH-3^MSH-4

    def decode(self, raw: bytes) -> Inbound:
        message = parse_message(raw, versions=self.versions, processing_id=self.processing_id)
        self.registry.lookup(message.header)  # an unsupported type is rejected (AR), not failed
        h = message.header
        if self.validate_senders & {h.sender, h.sending_facility}:
            problems = [p for p in validate_structure(message) if p.severity is Severity.ERROR]
            if problems:
                raise StructureInvalid(problems)
        return Inbound(sender=h.sender, control_id=h.control_id, type=h.message_code, payload=message,
                       charset=h.codec)

    def map(self, message: Inbound) -> Mapped:
        result = self.registry.map(_hl7(message), self.context)
        return Mapped(commands=result.commands, warnings=result.warnings, filtered=result.filtered)

    def answer(
        self, message: Inbound, outcome: Outcome, error: Exception | None, warnings: tuple[Any, ...]
    ) -> bytes | None:
        """Original mode: one ACK. Enhanced mode: the accept ACK (CA/CR) and the application
        ACK (AA/AE) each as MSH-15/16 ask, written one after the other in one answer (the
        journal keeps both; :func:`hl7_ack.split_acks` cuts them into a frame each).
        An acknowledgement is never answered."""
        header = _hl7(message).header
        if is_acknowledgement(header.message_type):
            return None
        plan = hl7_ack.ack_plan(header, hl7_ack.Outcome[outcome.name])
        codes = [code for code in (plan.accept, plan.application) if code is not None]
        details = [*_details(error), *warnings]  # on the last ACK: the application ACK where there is one
        acks = [hl7_ack.build_ack(header, code, details if n == len(codes) - 1 else [])
                for n, code in enumerate(codes)]
        return b"".join(acks) or None

    def reject(self, raw: bytes, error: Exception) -> bytes | None:
        header = salvage_header(raw)
        if is_acknowledgement(header.message_type):
            return None
        plan = hl7_ack.ack_plan(header, hl7_ack.Outcome.REJECTED)  # AR; in enhanced mode CR, as MSH-15 asks
        code = plan.accept or plan.application
        return None if code is None else hl7_ack.build_ack(header, code, _details(error))


    def identify(self, raw: bytes) -> Identity:
        """MSH-3^MSH-4, MSH-10 and MSH-9 as far as the MSH line reads; nothing for input with no MSH."""
        if b"MSH" not in raw:
            return Identity()
        header = salvage_header(raw)
        sender = header.sender if header.sending_application or header.sending_facility else None
        return Identity(sender, header.control_id or None, header.message_code or None)


class StructureInvalid(Rejected):
    """A message from a sender configured for strict validation that hl7apy finds invalid (AR)."""

    def __init__(self, problems: list[ErrorDetail]) -> None:
        first = problems[0]
        super().__init__(f"{len(problems)} structural problem(s): {first.text}", code=first.code,
                         location=first.location)
        self.details = problems


def _hl7(message: Inbound) -> Hl7Message:
    payload = message.payload
    if not isinstance(payload, Hl7Message):
        raise TypeError("the HL7 codec was handed a message it did not decode")
    return payload


def _details(error: Exception | None) -> list[ErrorDetail]:
    if error is None:
        return []
    if isinstance(error, StructureInvalid):
        return error.details
    if isinstance(error, Hl7Error):
        return [error.detail]
    code = ErrorCode.UNKNOWN_KEY_IDENTIFIER if getattr(error, "code", "") == "NOT_FOUND" else (
        ErrorCode.APPLICATION_INTERNAL_ERROR
    )
    return [ErrorDetail(code, str(error))]


class MllpInbound:
    """The MLLP server's handler: one frame in, its ACK out, strictly in order per connection."""

    def __init__(self, engine: InboundEngine, codec: Codec) -> None:
        self.engine = engine
        self.codec = codec

    async def on_frame(self, payload: bytes, peer: PeerInfo) -> list[bytes] | None:
        result = await self.engine.receive(self.codec, payload, peer=f"{peer.host}:{peer.port}")
        # enhanced mode may owe two ACKs (accept, application): a frame each, in that order
        return hl7_ack.split_acks(result.answer) if result.answer else None

    async def on_rejected(self, reason: RejectReason, head: bytes, peer: PeerInfo) -> bytes | None:
        text = {
            RejectReason.OVERSIZE: "frame exceeds the configured maximum size",
            RejectReason.TRUNCATED: "frame cut short by a new start block",
        }.get(reason, str(reason))
        log.warning("MLLP frame rejected: %s", text, extra={"connection_id": peer.connection_id})
        detail = ErrorDetail(ErrorCode.APPLICATION_INTERNAL_ERROR, text, location=ErrorLocation("MSH"))
        try:
            return hl7_ack.fallback_ack(head, detail, code=AckCode.AR)
        except HuizhenError:
            return None
