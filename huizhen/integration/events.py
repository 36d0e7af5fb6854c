"""The event bus: one interface, in-process by default, Redis pub/sub when configured.

Events are small JSON documents on a topic (``consultation``, ``message``,
``study``, ``policy``…). Subscribers get an async iterator; a slow subscriber
has a bounded queue and loses its oldest events rather than stalling the
publisher (consumers that must not miss anything read the store by cursor).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

log = logging.getLogger(__name__)

_QUEUE_SIZE = 1024


@dataclass(frozen=True)
class Event:
    topic: str
    type: str
    data: dict[str, Any]
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def encode(self) -> str:
        return json.dumps(
            {"topic": self.topic, "type": self.type, "data": self.data, "at": self.at},
            ensure_ascii=False,
        )

    @classmethod
    def decode(cls, raw: str | bytes) -> Event:
        doc = json.loads(raw)
        return cls(topic=doc["topic"], type=doc["type"], data=doc["data"], at=doc["at"])


class EventBus(Protocol):
    async def publish(self, event: Event) -> None: ...

    def subscribe(self, *topics: str) -> Subscription: ...

    async def close(self) -> None: ...


class Subscription:
    """Registered as soon as it is created, so nothing published after
    ``subscribe()`` returns is missed; iterate it, then ``close()`` it."""

    def __init__(self, fanout: _Fanout, topics: tuple[str, ...]) -> None:
        self._fanout = fanout
        self._topics = topics
        self.queue: asyncio.Queue[Event] = asyncio.Queue(_QUEUE_SIZE)
        for t in topics:
            fanout.subs.setdefault(t, set()).add(self.queue)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.queue.get()

    def close(self) -> None:
        for t in self._topics:
            self._fanout.subs.get(t, set()).discard(self.queue)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class _Fanout:
    """Local delivery to subscriber queues, shared by both implementations."""

    def __init__(self) -> None:
        self.subs: dict[str, set[asyncio.Queue[Event]]] = {}

    def deliver(self, event: Event) -> None:
        for q in self.subs.get(event.topic, ()):
            if q.full():
                q.get_nowait()
                log.warning("subscriber queue full; dropped oldest event", extra={"topic": event.topic})
            q.put_nowait(event)


class InProcessBus:
    def __init__(self) -> None:
        self._fanout = _Fanout()

    async def publish(self, event: Event) -> None:
        self._fanout.deliver(event)

    def subscribe(self, *topics: str) -> Subscription:
        return Subscription(self._fanout, topics)

    async def close(self) -> None:
        return None


class RedisBus:
    """Every instance publishes to Redis and delivers what Redis sends back.

    One pub/sub connection per instance listens on all topics (pattern
    ``<prefix>*``); local subscribers are served from it, so an event reaches
    subscribers of every instance exactly once, including the publisher's own.
    """

    def __init__(self, url: str, prefix: str = "huizhen:") -> None:
        import redis.asyncio as redis  # an optional dependency of the scale-out mode

        self._redis = redis.from_url(url)
        self._prefix = prefix
        self._fanout = _Fanout()
        self._pubsub = self._redis.pubsub()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._pubsub.psubscribe(self._prefix + "*")
        # wait for Redis to confirm, so that nothing published after start() is missed
        while True:
            msg = await self._pubsub.get_message(timeout=5.0)
            if msg is None:
                raise ConnectionError("Redis did not confirm the event-bus subscription")
            if msg["type"] == "psubscribe":
                break
        self._task = asyncio.create_task(self._listen(), name="redis-bus")

    async def _listen(self) -> None:
        while True:
            try:
                msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # connection loss: log, back off, redis-py reconnects
                log.exception("redis bus: receive failed")
                await asyncio.sleep(0.5)
                continue
            if msg is None:
                continue
            try:
                self._fanout.deliver(Event.decode(msg["data"]))
            except (ValueError, KeyError):
                log.warning("redis bus: ignored a malformed event")

    async def publish(self, event: Event) -> None:
        await self._redis.publish(self._prefix + event.topic, event.encode())

    def subscribe(self, *topics: str) -> Subscription:
        return Subscription(self._fanout, topics)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pubsub.aclose()
        await self._redis.aclose()


async def create_bus(broker_url: str | None) -> EventBus:
    if not broker_url:
        return InProcessBus()
    bus = RedisBus(broker_url)
    await bus.start()
    return bus
