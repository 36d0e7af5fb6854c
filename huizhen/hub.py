"""The link between ``huizhen serve`` and its worker processes, and the event bus over it.

Each worker holds one socket to the parent (a socket pair made at spawn). On
it go JSON lines, one frame each, ``{"kind": …}``:

* ``hello`` (parent → worker, first): the settings and what the worker serves;
* ``ready`` (worker → parent): it listens;
* ``event`` (both ways): a bus event (:class:`huizhen.integration.events.Event`);
* ``channels`` (parent → worker): the channel states the parent owns;
* ``ask`` / ``answer``: a question with an id and its reply (``/metrics``).

Without a broker the parent's bus is a hub (:class:`HubBus`): an event
published in the parent reaches its own subscribers and every worker; an event
from worker k reaches the parent's subscribers and every other worker, never k
again (k delivered it to its own subscribers already), and a worker never sends
on what it received, so nothing loops. With a broker (Redis) every process
publishes there and the link carries no events.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from huizhen.integration.events import Event, InProcessBus

log = logging.getLogger(__name__)

LINE_LIMIT = 16 * 1024 * 1024  # a /metrics exposition is the largest frame
_ASK_TIMEOUT_S = 10.0

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def frame(kind: str, **body: Any) -> bytes:
    return json.dumps({"kind": kind, **body}, ensure_ascii=False).encode() + b"\n"


def event_frame(event: Event) -> bytes:
    return frame("event", event={"topic": event.topic, "type": event.type, "data": event.data, "at": event.at})


class Link:
    """One end of a parent↔worker socket.

    ``handlers`` answer frames by kind; an ``event`` or ``channels`` frame is
    handled before the next line is read (events stay in order), an ``ask`` in
    a task of its own (its answer may need a question to another process).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str) -> None:
        self.reader, self.writer, self.name = reader, writer, name
        self.handlers: dict[str, Handler] = {}
        self._asked: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._asks: set[asyncio.Task[None]] = set()
        self._ended = False  # the other end closed: a question would wait for nothing

    @classmethod
    async def open(cls, sock: Any, name: str) -> Link:
        reader, writer = await asyncio.open_connection(sock=sock, limit=LINE_LIMIT)
        return cls(reader, writer, name)

    @property
    def closed(self) -> bool:
        return self._ended or self.writer.is_closing()

    def write(self, line: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(line)

    async def send(self, line: bytes) -> None:
        self.write(line)
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def ask(self, question: str, timeout_s: float = _ASK_TIMEOUT_S) -> Any:
        if self._ended:
            raise ConnectionError(f"{self.name}: link closed")
        n = next(self._ids)
        self._asked[n] = answer = asyncio.get_running_loop().create_future()
        try:
            await self.send(frame("ask", id=n, question=question))
            async with asyncio.timeout(timeout_s):
                return await answer
        finally:
            self._asked.pop(n, None)

    async def run(self) -> None:
        """Read frames until the other end closes its socket (or dies)."""
        try:
            while line := await self.reader.readline():
                try:
                    doc = json.loads(line)
                    kind = doc["kind"]
                except (ValueError, KeyError, TypeError):
                    log.warning("%s: ignored a malformed frame", self.name)
                    continue
                if kind == "answer":
                    future = self._asked.get(doc.get("id"))
                    if future is not None and not future.done():
                        future.set_result(doc.get("value"))
                elif kind == "ask":
                    task = asyncio.create_task(self._answer(doc), name=f"{self.name}-answer")
                    self._asks.add(task)
                    task.add_done_callback(self._asks.discard)
                elif (handler := self.handlers.get(kind)) is not None:
                    try:
                        await handler(doc)
                    except (ValueError, KeyError, TypeError):
                        log.warning("%s: ignored a malformed %s frame", self.name, kind)
        except (ConnectionError, ValueError):  # ValueError: a line over LINE_LIMIT
            log.warning("%s: link lost", self.name, exc_info=True)
        finally:
            self._ended = True
            for future in self._asked.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"{self.name}: link closed"))

    async def _answer(self, doc: dict[str, Any]) -> None:
        handler = self.handlers.get(f"ask:{doc.get('question')}")
        value = None
        if handler is not None:
            try:
                value = await handler(doc)
            except Exception:  # the asker gets None rather than waiting for its timeout
                log.exception("%s: could not answer %s", self.name, doc.get("question"))
        await self.send(frame("answer", id=doc.get("id"), value=value))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
        for task in list(self._asks):
            task.cancel()


def decode_event(doc: dict[str, Any]) -> Event:
    e = doc["event"]
    return Event(topic=e["topic"], type=e["type"], data=e["data"], at=e["at"])


class HubBus(InProcessBus):
    """The parent's bus without a broker: local subscribers plus every linked worker."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[Link] = []

    def attach(self, link: Link) -> None:
        self.links.append(link)

        async def from_worker(doc: dict[str, Any]) -> None:
            await self.forward(decode_event(doc), source=link)

        link.handlers["event"] = from_worker

    def detach(self, link: Link) -> None:
        with contextlib.suppress(ValueError):
            self.links.remove(link)

    async def publish(self, event: Event) -> None:
        await self.forward(event, source=None)

    async def forward(self, event: Event, source: Link | None) -> None:
        self._fanout.deliver(event)
        targets = [link for link in self.links if link is not source and not link.closed]
        if not targets:
            return
        line = event_frame(event)  # encoded once for every worker
        for link in targets:
            link.write(line)
        for link in targets:
            with contextlib.suppress(ConnectionError):
                await link.writer.drain()


class LinkBus(InProcessBus):
    """A worker's bus without a broker: local subscribers, and the parent (the hub) for everyone else."""

    def __init__(self, link: Link) -> None:
        super().__init__()
        self.link = link

        async def from_hub(doc: dict[str, Any]) -> None:
            self._fanout.deliver(decode_event(doc))  # delivered here only: the hub told everyone else

        link.handlers["event"] = from_hub

    async def publish(self, event: Event) -> None:
        self._fanout.deliver(event)
        await self.link.send(event_frame(event))
