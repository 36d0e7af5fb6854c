"""Adaptive bitrate: from a peer's ``stats`` reports to a recommended rung of the ladder.

A pure policy. The ladder is ordered from the best rung to the lowest; the
state is where the peer is on it and how many good reports it has sent in a
row. Loss or round-trip time over the thresholds steps down at once (two rungs
on severe loss); the policy steps up one rung only after ``up_after``
consecutive good reports, so a township clinic's flaky link does not flap
between resolutions.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

_RUNG = re.compile(r"^\s*(\d{2,5})x(\d{2,5})@(\d{1,3}):(\d{1,6})\s*$")


@dataclass(frozen=True, slots=True)
class Rung:
    width: int
    height: int
    fps: int
    kbps: int

    def as_message(self) -> dict[str, int]:
        return {"width": self.width, "height": self.height, "fps": self.fps, "bitrateKbps": self.kbps}

    def __str__(self) -> str:
        return f"{self.width}x{self.height}@{self.fps} {self.kbps}kbps"


@dataclass(frozen=True, slots=True)
class Policy:
    ladder: tuple[Rung, ...]
    start: int = 2
    loss_down_pct: float = 5.0
    loss_severe_pct: float = 15.0
    rtt_down_ms: float = 400.0
    good_loss_pct: float = 2.0
    good_rtt_ms: float = 250.0
    up_after: int = 5

    def initial(self) -> State:
        return State(min(self.start, len(self.ladder) - 1), 0)


@dataclass(frozen=True, slots=True)
class State:
    rung: int  # index into the ladder, 0 = best
    good_streak: int


@dataclass(frozen=True, slots=True)
class Stats:
    bitrate_kbps: float
    loss_pct: float
    rtt_ms: float


def parse_ladder(text: str) -> tuple[Rung, ...]:
    """``1280x720@30:1500,640x360@25:600`` (best first); ValueError names the bad item."""
    rungs = []
    for item in filter(None, (i.strip() for i in text.split(","))):
        m = _RUNG.match(item)
        if not m:
            raise ValueError(f"bad rung {item!r}: expected WIDTHxHEIGHT@FPS:KBPS")
        rungs.append(Rung(*(int(g) for g in m.groups())))
    if not rungs:
        raise ValueError("the ladder needs at least one rung")
    if any(a.kbps <= b.kbps for a, b in itertools.pairwise(rungs)):
        raise ValueError("rungs must be ordered from the highest bitrate to the lowest")
    return tuple(rungs)


def recommend(policy: Policy, state: State, stats: Stats) -> tuple[State, Rung]:
    """The next state and the rung to use after one ``stats`` report."""
    last = len(policy.ladder) - 1
    rung = state.rung
    if stats.loss_pct >= policy.loss_severe_pct:
        return State(min(rung + 2, last), 0), policy.ladder[min(rung + 2, last)]
    if stats.loss_pct >= policy.loss_down_pct or stats.rtt_ms >= policy.rtt_down_ms:
        return State(min(rung + 1, last), 0), policy.ladder[min(rung + 1, last)]
    # the path carries clearly less than this rung needs: step down even without loss
    if stats.bitrate_kbps > 0 and stats.bitrate_kbps < policy.ladder[rung].kbps * 0.5:
        return State(min(rung + 1, last), 0), policy.ladder[min(rung + 1, last)]
    if stats.loss_pct <= policy.good_loss_pct and stats.rtt_ms <= policy.good_rtt_ms:
        streak = state.good_streak + 1
        if streak >= policy.up_after and rung > 0:
            return State(rung - 1, 0), policy.ladder[rung - 1]
        return State(rung, streak), policy.ladder[rung]
    return State(rung, 0), policy.ladder[rung]  # neither bad nor good: hold


def choose_for_path(policy: Policy, stats: Stats) -> Rung:
    """The rung a measured path (a network check) supports: the best that fits its bitrate,
    lowered as :func:`recommend` would lower it for loss and round-trip time."""
    fits = [i for i, r in enumerate(policy.ladder) if r.kbps <= stats.bitrate_kbps]
    index = fits[0] if fits else len(policy.ladder) - 1
    _, rung = recommend(policy, State(index, 0), Stats(0.0, stats.loss_pct, stats.rtt_ms))
    return rung
