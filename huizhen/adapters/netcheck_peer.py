"""The echo peer of a network check (imports aiortc: only loaded when a check starts)."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from huizhen.adapters.bitrate import Policy, Stats, choose_for_path
from huizhen.adapters.netcheck import Result


class EchoPeer:

    def __init__(self, policy: Policy, seconds: float) -> None:
        self.id = "netcheck-" + secrets.token_urlsafe(6)
        self.policy = policy
        self.seconds = seconds
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames = 0
        self.media = asyncio.Event()
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)

    def _on_track(self, track: Any) -> None:
        if track.kind == "video":
            self.pc.addTrack(Echo(track, self))

    def _on_datachannel(self, channel: Any) -> None:
        channel.on("message", channel.send)  # an echo the client may time itself

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def add_candidate(self, candidate: dict[str, Any] | None) -> None:
        if not candidate or not candidate.get("candidate"):
            return
        c = candidate_from_sdp(str(candidate["candidate"]).removeprefix("candidate:"))
        c.sdpMid = candidate.get("sdpMid")
        c.sdpMLineIndex = candidate.get("sdpMLineIndex")
        await self.pc.addIceCandidate(c)

    async def measure(self) -> Result:
        await self.media.wait()
        start_bytes, start = await self._bytes_received(), time.monotonic()
        await asyncio.sleep(self.seconds)
        end_bytes, elapsed = await self._bytes_received(), time.monotonic() - start
        kbps = max(0.0, (end_bytes - start_bytes) * 8 / 1000 / max(elapsed, 1e-3))
        received = lost = 0
        rtts: list[float] = []
        for s in (await self.pc.getStats()).values():
            if s.type == "inbound-rtp" and s.kind == "video":
                received, lost = received + s.packetsReceived, lost + max(0, s.packetsLost)
            elif s.type == "remote-inbound-rtp" and s.kind == "video" and s.roundTripTime:
                rtts.append(s.roundTripTime * 1000)
        loss = 100.0 * lost / (received + lost) if received + lost else 0.0
        rtt = round(min(rtts), 1) if rtts else None
        rung = choose_for_path(self.policy, Stats(kbps, loss, rtt or 0.0))
        return Result(rtt, round(loss, 2), round(kbps, 1), self.frames, rung)

    async def _bytes_received(self) -> int:
        return sum(s.bytesReceived for s in (await self.pc.getStats()).values() if s.type == "transport")

    async def close(self) -> None:
        await self.pc.close()


class Echo(MediaStreamTrack):  # type: ignore[misc]  # aiortc is untyped
    """Sends back every frame received on ``source``."""

    kind = "video"

    def __init__(self, source: Any, owner: EchoPeer) -> None:
        super().__init__()
        self.source = source
        self.owner = owner

    async def recv(self) -> Any:
        frame = await self.source.recv()
        self.owner.frames += 1
        self.owner.media.set()
        return frame
