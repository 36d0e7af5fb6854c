"""An ACK that arrives on the inbound channel → a link to the outbound message it acknowledges.

A HIS may acknowledge our outbound ORU on the connection it sends on (an
enhanced-mode application ACK), or send an ACK by mistake. Either way it is
not data: it is journaled FILTERED, linked by MSA-2 to the outbound message
with that control id where there is one, and never answered — an
acknowledgement is not acknowledged (HL7 v2, 2.9.2 / 2.9.3).
"""

from __future__ import annotations

from huizhen.integration.commands import LinkAcknowledgement

from .context import MappingContext, MappingResult, Scope
from .parse import Hl7Message

ACK_TYPE = "ACK"


def is_acknowledgement(message_type: str) -> bool:
    """Whether MSH-9.1 names an acknowledgement (which is never answered)."""
    return message_type.strip().upper() == ACK_TYPE


def map_acknowledgement(message: Hl7Message, context: MappingContext) -> MappingResult:
    scope = Scope(message, context)
    msa = message.first("MSA")
    code = msa.get(1) if msa is not None else ""
    acknowledged = msa.get(2) if msa is not None else ""
    if not acknowledged:
        return scope.filtered(f"acknowledgement {code or '(no MSA-1)'} without MSA-2: not answered")
    link = LinkAcknowledgement(control_id=acknowledged, code=code, destination=scope.facility_code)
    result = scope.filtered(f"acknowledgement {code or '(no MSA-1)'} of message {acknowledged}: not answered")
    return MappingResult((link,), result.warnings, result.filtered)
