"""Which facility an MLLP connection speaks for, and refusing messages that claim another.

A sender is identified by its connection, never by what it writes: the TLS
client certificate (its common name or a DNS subject-alternative name, from
``mllp_sender_certs``) or else its source address (``mllp_sender_addresses``,
addresses or CIDR networks). Each maps to one facility code. With either
setting configured, every message's MSH-4 must name that facility: a message
from an unknown connection, or whose MSH-4 names another facility, is
journaled as rejected, answered AR with an ERR naming MSH-4, and written to
the audit trail. No facility can write into another's patients by spoofing
MSH-4. With neither configured (development) any sender is accepted.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from huizhen.adapters.hl7_channel import MllpInbound
from huizhen.adapters.mllp import PeerInfo, RejectReason
from huizhen.integration.engine import Codec, Identity, Inbound, Mapped, Outcome
from huizhen.integration.model import AuditEvent
from huizhen.mappings.hl7v2.errors import ErrorLocation, Rejected
from huizhen.mappings.hl7v2.tables import ErrorCode
from huizhen.settings import Settings, parse_pairs

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MSH_4 = ErrorLocation("MSH", field=4)


class SenderRefused(Rejected):
    """The connection may not send for the facility this message names (AR)."""

    default_code = ErrorCode.TABLE_VALUE_NOT_FOUND


@dataclass(frozen=True)
class SenderPolicy:
    by_cert: dict[str, str]  # certificate CN or DNS SAN -> facility code
    by_network: tuple[tuple[Network, str], ...]  # most specific first

    @classmethod
    def from_settings(cls, settings: Settings) -> SenderPolicy:
        networks = [(ipaddress.ip_network(k, strict=False), v) for k, v in
                    parse_pairs(settings.mllp_sender_addresses).items()]
        networks.sort(key=lambda pair: -pair[0].prefixlen)
        return cls(parse_pairs(settings.mllp_sender_certs), tuple(networks))

    @property
    def configured(self) -> bool:
        return bool(self.by_cert or self.by_network)

    def facility_of(self, peer: PeerInfo) -> str | None:
        for name in (peer.cert_common_name, *peer.cert_dns_names):
            if name and name in self.by_cert:
                return self.by_cert[name]
        try:
            address = ipaddress.ip_address(peer.host)
        except ValueError:
            return None
        return next((facility for network, facility in self.by_network if address in network), None)


class FacilityBound:
    """An HL7 codec for one connection's frames that rejects an MSH-4 other than its facility."""

    def __init__(self, codec: Codec, facility: str | None, peer: PeerInfo) -> None:
        self.codec, self.facility, self.peer = codec, facility, peer
        self.channel = codec.channel
        self.refused: SenderRefused | None = None

    def decode(self, raw: bytes) -> Inbound:
        inbound = self.codec.decode(raw)
        claimed = inbound.payload.header.sending_facility
        if self.facility is None:
            self.refused = SenderRefused(
                f"MSH-4 {claimed!r} refused: connection {self.peer.host} is not an allowed MLLP sender",
                location=MSH_4,
            )
        elif claimed != self.facility:
            self.refused = SenderRefused(
                f"MSH-4 {claimed!r} is not this connection's facility {self.facility!r}", location=MSH_4
            )
        if self.refused is not None:
            raise self.refused
        return inbound

    def map(self, message: Inbound) -> Mapped:
        return self.codec.map(message)

    def answer(
        self, message: Inbound, outcome: Outcome, error: Exception | None, warnings: tuple[Any, ...]
    ) -> bytes | None:
        return self.codec.answer(message, outcome, error, warnings)

    def reject(self, raw: bytes, error: Exception) -> bytes | None:
        return self.codec.reject(raw, error)

    def identify(self, raw: bytes) -> Identity:
        return self.codec.identify(raw)


class SenderGuard:
    """The MLLP server's handler when senders are configured: bind each frame to its connection's facility."""

    def __init__(self, inbound: MllpInbound, policy: SenderPolicy) -> None:
        self.inbound = inbound
        self.policy = policy

    async def on_frame(self, payload: bytes, peer: PeerInfo) -> bytes | None:
        codec = FacilityBound(self.inbound.codec, self.policy.facility_of(peer), peer)
        source = f"{peer.host}:{peer.port}"
        result = await self.inbound.engine.receive(codec, payload, peer=source)
        if codec.refused is not None:
            await self._audit(codec, peer, result.message.id, source)
        return result.answer

    async def on_rejected(self, reason: RejectReason, head: bytes, peer: PeerInfo) -> bytes | None:
        return await self.inbound.on_rejected(reason, head, peer)

    async def _audit(self, codec: FacilityBound, peer: PeerInfo, message_id: str, source: str) -> None:
        actor = f"mllp:{peer.cert_common_name or peer.host}"
        log.warning("MLLP message refused: %s", codec.refused, extra={"connection_id": peer.connection_id})
        event = AuditEvent(
            at=datetime.now(UTC), actor=actor, action="hl7-receive", outcome="denied",
            roles=["his_system"], entity_type="Message", entity_id=message_id,
            detail=f"{codec.refused} (connection facility: {codec.facility or 'none'})", source=source,
        )
        async with self.inbound.engine.store.write() as repo:
            await repo.audit.append(event)


def mllp_handler(inbound: MllpInbound, settings: Settings) -> MllpInbound | SenderGuard:
    policy = SenderPolicy.from_settings(settings)
    return SenderGuard(inbound, policy) if policy.configured else inbound
