"""Pre-call network check: a server-side aiortc peer echoes the client's video back.

The client offers (``to`` the check's peer id, from ``netcheck-ready``); the
echo peer answers, sends every received video frame back on the same
connection and, after ``netcheck_seconds`` of media, reports what it
measured: round-trip time (RTCP, from the client's receiver reports on the
echo), loss (of the client's stream as received here) and the bitrate the
path sustained (bytes received over the window), with the rung of the
adaptive ladder those figures call for.

Bounded: one check per user at a time, at most ``netcheck_max_concurrent``
at once on an instance, each limited to ``netcheck_timeout_seconds``.
aiortc is an optional dependency (``pip install 'huizhen[webrtc]'``); without
it a check answers ``NETCHECK_UNAVAILABLE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from huizhen.adapters.bitrate import Policy, Rung
from huizhen.adapters.signaling_protocol import Code, SignalingError


@dataclass(frozen=True, slots=True)
class Result:
    rtt_ms: float | None
    loss_pct: float
    bitrate_kbps: float
    frames_echoed: int
    rung: Rung

    def as_message(self) -> dict[str, Any]:
        return {
            "type": "netcheck-result", "rttMs": self.rtt_ms, "lossPct": self.loss_pct,
            "bitrateKbps": self.bitrate_kbps, "framesEchoed": self.frames_echoed,
            "recommended": self.rung.as_message(),
        }

    def summary(self) -> str:
        rtt = "?" if self.rtt_ms is None else f"{self.rtt_ms:.0f}"
        return f"rtt {rtt} ms, loss {self.loss_pct:.1f}%, {self.bitrate_kbps:.0f} kbps -> {self.rung}"


class NetChecks:
    """The bounds: who is testing now, how many at once."""

    def __init__(self, policy: Policy, *, seconds: float, timeout_s: float, max_concurrent: int) -> None:
        self.policy = policy
        self.seconds = seconds
        self.timeout_s = timeout_s
        self.max_concurrent = max_concurrent
        self.active: dict[str, Any] = {}  # user -> EchoPeer

    def acquire(self, user: str) -> Any:
        """A new :class:`~huizhen.adapters.netcheck_peer.EchoPeer` for ``user``; :meth:`release` it."""
        try:
            from huizhen.adapters.netcheck_peer import EchoPeer  # aiortc: the optional [webrtc] extra
        except ImportError as exc:
            raise SignalingError(Code.NETCHECK_UNAVAILABLE, "this server has no WebRTC stack (aiortc)") from exc
        if user in self.active:
            raise SignalingError(Code.NETCHECK_BUSY, "a network check of this user is already running")
        if len(self.active) >= self.max_concurrent:
            raise SignalingError(Code.NETCHECK_BUSY, "too many network checks at once; retry in a minute")
        peer = EchoPeer(self.policy, self.seconds)
        self.active[user] = peer
        return peer

    def release(self, user: str) -> None:
        self.active.pop(user, None)
