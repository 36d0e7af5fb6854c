"""Rooms across instances: local peers here, remote peers learned through the event bus.

Each instance holds the sockets of its own peers. Presence and relayed
messages for peers elsewhere travel on the bus topic ``signaling`` (Redis
pub/sub with ``HUIZHEN_BROKER_URL``; in-process otherwise, where the hub only
ever hears itself). A relay to a local peer never touches the bus.

Bus events (``data`` always carries ``instance``, the sender's instance id):

* ``join`` / ``leave``: ``room``, ``peer``, ``user`` — presence;
* ``query``: ``room``, ``nonce`` — a joining peer asks who is there;
  instances with peers in the room answer ``present`` (``to_instance``,
  ``peers``);
* ``relay``: ``to_instance``, ``room``, ``to``, ``message``.

A consultation leaving ASSIGNED/IN_PROGRESS (topic ``consultation``) closes
its room on every instance: local peers get ``room-closed`` and are
disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from huizhen.adapters.signaling_access import JOINABLE
from huizhen.adapters.signaling_protocol import Close
from huizhen.integration.consultations import TOPIC as CONSULTATION_TOPIC
from huizhen.integration.events import Event, EventBus
from huizhen.integration.model import ConsultationStatus

log = logging.getLogger(__name__)

TOPIC = "signaling"
_OUTBOX = 512  # queued messages per socket before it counts as a slow consumer


@dataclass(frozen=True, slots=True)
class Closing:
    code: int
    reason: str


@dataclass(eq=False)
class Peer:
    """One socket's presence; what it is sent goes through ``outbox`` to its writer task."""

    id: str
    user: str
    room: str | None = None
    outbox: asyncio.Queue[str | Closing] = field(default_factory=lambda: asyncio.Queue(_OUTBOX))

    def send(self, message: dict[str, Any]) -> None:
        self.send_text(json.dumps(message, ensure_ascii=False))

    def send_text(self, text: str) -> None:
        try:
            self.outbox.put_nowait(text)
        except asyncio.QueueFull:
            log.warning("signaling: peer %s does not read its messages; closing it", self.id)
            self.close(Close.SLOW_CONSUMER, "too many unread messages")

    def close(self, code: int, reason: str) -> None:
        while self.outbox.full():  # the close must get through
            self.outbox.get_nowait()
        self.outbox.put_nowait(Closing(code, reason))

    def describe(self) -> dict[str, str]:
        return {"id": self.id, "user": self.user}


class Rooms:
    def __init__(self, bus: EventBus, *, presence_wait_s: float) -> None:
        self.bus = bus
        self.instance = secrets.token_hex(8)
        self.presence_wait_s = presence_wait_s
        self.local: dict[str, dict[str, Peer]] = {}
        self.remote: dict[str, dict[str, tuple[str, dict[str, str]]]] = {}  # room -> peer -> (instance, info)

    def new_peer(self, user: str) -> Peer:
        return Peer(id=secrets.token_urlsafe(9), user=user)

    def members(self, room: str) -> dict[str, dict[str, str]]:
        out = {pid: info for pid, (_, info) in self.remote.get(room, {}).items()}
        out.update({pid: p.describe() for pid, p in self.local.get(room, {}).items()})
        return out

    async def enter(self, peer: Peer, room: str, welcome: Callable[[list[dict[str, str]]], dict[str, Any]]) -> None:
        """Put ``peer`` in ``room``: first ``welcome(peers present on every instance)`` to it, then
        ``peer-joined`` to them, so nothing relayed to the newcomer can overtake its welcome."""
        if self.presence_wait_s:
            await self._ask_who_is_there(room)
        peer.send(welcome([info for pid, info in self.members(room).items() if pid != peer.id]))
        peer.room = room
        for other in self.local.get(room, {}).values():
            other.send({"type": "peer-joined", "peer": peer.describe()})
        self.local.setdefault(room, {})[peer.id] = peer
        await self._publish("join", room=room, peer=peer.id, user=peer.user)

    async def exit(self, peer: Peer) -> None:
        room, peer.room = peer.room, None
        if room is None:
            return
        peers = self.local.get(room, {})
        peers.pop(peer.id, None)
        if not peers:
            self.local.pop(room, None)
        for other in peers.values():
            other.send({"type": "peer-left", "peer": peer.id})
        await self._publish("leave", room=room, peer=peer.id)

    async def relay(self, room: str, to: str, message: dict[str, Any]) -> bool:
        """Deliver to peer ``to`` of ``room`` wherever it is; False when the room has no such peer."""
        target = self.local.get(room, {}).get(to)
        if target is not None:
            target.send(message)
            return True
        remote = self.remote.get(room, {}).get(to)
        if remote is None:
            return False
        await self._publish("relay", to_instance=remote[0], room=room, to=to, message=message)
        return True

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        sub = self.bus.subscribe(TOPIC, CONSULTATION_TOPIC)
        task = asyncio.create_task(self._listen(sub), name="signaling-bus")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            sub.close()
            for peers in list(self.local.values()):
                for p in list(peers.values()):
                    p.close(Close.NORMAL, "server shutting down")

    async def _listen(self, sub: Any) -> None:
        async for event in sub:
            try:
                if event.topic == CONSULTATION_TOPIC:
                    self._on_consultation(event.data)
                elif event.data.get("instance") != self.instance:
                    await self._on_signal(event.type, event.data)
            except (KeyError, TypeError, ValueError):
                log.warning("signaling: ignored a malformed bus event %s", event.type)

    def _on_consultation(self, data: dict[str, Any]) -> None:
        status = ConsultationStatus(data["status"])
        room = data["id"]
        if status in JOINABLE:
            return
        self.remote.pop(room, None)
        for p in list(self.local.get(room, {}).values()):
            p.send({"type": "room-closed", "room": room, "status": status.value})
            p.close(Close.ROOM_CLOSED, f"consultation {status.value}")

    async def _on_signal(self, kind: str, d: dict[str, Any]) -> None:
        room = d["room"]
        if kind == "join":
            info = {"id": d["peer"], "user": d["user"]}
            self.remote.setdefault(room, {})[d["peer"]] = (d["instance"], info)
            for p in self.local.get(room, {}).values():
                p.send({"type": "peer-joined", "peer": info})
        elif kind == "leave":
            self.remote.get(room, {}).pop(d["peer"], None)
            for p in self.local.get(room, {}).values():
                p.send({"type": "peer-left", "peer": d["peer"]})
        elif kind == "relay" and d["to_instance"] == self.instance:
            target = self.local.get(room, {}).get(d["to"])
            if target is not None:
                target.send(d["message"])
        elif kind == "query" and room in self.local:
            peers = [p.describe() for p in self.local[room].values()]
            await self._publish("present", room=room, to_instance=d["instance"], nonce=d["nonce"], peers=peers)
        elif kind == "present" and d["to_instance"] == self.instance:
            known = self.remote.setdefault(room, {})
            for info in d["peers"]:
                known[info["id"]] = (d["instance"], {"id": info["id"], "user": info["user"]})

    async def _ask_who_is_there(self, room: str) -> None:
        """Other instances answer with their peers in ``room``; wait a short, bounded time for them."""
        await self._publish("query", room=room, nonce=secrets.token_hex(6))
        await asyncio.sleep(self.presence_wait_s)  # answers come from any number of instances

    async def _publish(self, kind: str, **data: Any) -> None:
        await self.bus.publish(Event(topic=TOPIC, type=kind, data={"instance": self.instance, **data}))
