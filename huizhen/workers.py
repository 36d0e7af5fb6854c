"""Worker processes: more cores behind the one MLLP port and the one HTTP port.

With ``mllp_workers = M`` and ``http_workers = H`` the server process and
max(M, H) - 1 children serve; child k (1, 2, …) serves MLLP when k < M and
HTTP when k < H. The parent alone listens on each port and hands each
connection it accepts to the process serving the fewest on that port, itself
included (a socket pair per child and port, :mod:`huizhen.adapters.balance`;
a child's uvicorn serves the HTTP connections handed to it,
:mod:`huizhen.adapters.http_adopt`). A connection stays with the process that
serves it: an MLLP sender's messages still apply in order, a WebSocket stays
with its subscriptions.

What stays in the parent only: the DICOM listener, the SLA watcher, the
outbound senders (HL7 reports, FHIR push), the case-image copier. A child
serves requests and nothing else, with its own store connections (on SQLite
the processes take turns writing through the lock file of
:mod:`huizhen.integration.write_lock`, so the audit chain and the journal see
one writer at a time) and its own in-memory caches, kept current by the bus:
the RBAC policy (topic ``policy``), the mapping tables (each process also
polls the files), signaling rooms.

Events travel over each child's socket pair to the parent, whose bus is the
hub (:mod:`huizhen.hub`); with a broker every process uses Redis instead.
Channel states (``channels`` in GraphQL) are the parent's, sent to the children
when they change (at most a second late); ``/metrics`` asked of any process
is the sum over all of them (the parent gathers, a child asks the parent).

When the socket pair closes (the parent shuts down, or dies, even by SIGKILL)
a child stops listening, finishes what it holds and exits. A child that ends
while the parent runs (killed, out of memory, a crash) is started again in
its place, after a pause that doubles while children keep dying young (1 s up
to a minute), so a broken deployment does not spin; its connections were
lost with it (their senders reconnect, as after any dropped connection) and
the other processes serve on meanwhile. ``huizhen_worker_restarts_total``
counts the restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from huizhen.adapters.balance import Adopter, Balancer, handoff_pair
from huizhen.adapters.http_adopt import AdoptingServer
from huizhen.hub import HubBus, Link, LinkBus, frame
from huizhen.metrics import merge_expositions
from huizhen.settings import Settings

if TYPE_CHECKING:
    from huizhen.app import ChannelState, Services

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 60.0
_STOP_GRACE_S = 10.0
_CHANNELS_EVERY_S = 1.0
_RESTART_FIRST_S = 1.0  # the pause before a dead child is started again; doubles while children die young
_RESTART_MAX_S = 60.0
_YOUNG_S = 30.0  # a child that ran at least this long resets the pause
# every process counts its own signaling traffic; the other channels' states are the parent's
_OWN_CHANNELS = frozenset({"signaling"})


@dataclasses.dataclass(frozen=True)
class Role:
    number: int
    mllp: bool
    http: bool


def roles(settings: Settings) -> list[Role]:
    """The children to start: child k serves MLLP if k < mllp_workers, HTTP if k < http_workers."""
    mllp = settings.mllp_workers if settings.mllp_port else 1
    http = settings.http_workers if settings.http_port else 1
    return [Role(k, k < mllp, k < http) for k in range(1, max(mllp, http))]


def settings_document(settings: Settings) -> dict[str, Any]:
    """The settings as JSON for a child, secrets included (pydantic masks them otherwise)."""
    doc = settings.model_dump(mode="json")
    for name, value in settings:
        if isinstance(value, SecretStr):
            doc[name] = value.get_secret_value()
    return doc


def _channel_document(channels: dict[str, ChannelState]) -> dict[str, dict[str, Any]]:
    return {
        name: {k: v.isoformat() if isinstance(v, datetime) else v for k, v in dataclasses.asdict(state).items()}
        for name, state in channels.items() if name not in _OWN_CHANNELS
    }


class _Child:
    def __init__(self, role: Role, process: asyncio.subprocess.Process, link: Link) -> None:
        self.role, self.process, self.link = role, process, link
        self.reading: asyncio.Task[None] | None = None
        self.started = time.monotonic()


class Workers:
    """The parent's side: starts the children of ``roles(settings)``, links them to ``services``' bus."""

    def __init__(self, settings: Settings, services: Services, balancer: Balancer | None = None,
                 http: Balancer | None = None) -> None:
        """``balancer``, ``http``: the parent's MLLP and HTTP listeners, which hand connections to the children."""
        self.settings = settings  # the ports are the ones the parent bound
        self.services = services
        self.balancer = balancer
        self.http = http
        self._children: list[_Child] = []
        self._pusher: asyncio.Task[None] | None = None
        self._channels_sent: dict[str, dict[str, Any]] = {}
        self._stopping = False
        self._restarting: set[asyncio.Task[None]] = set()
        self._pause: dict[int, float] = {}  # role number -> the next restart's pause

    async def start(self) -> None:
        # started together: each child's start-up (imports, schema, policy) is seconds of CPU
        started = await asyncio.gather(*(self._spawn(role) for role in roles(self.settings)), return_exceptions=True)
        self._children = [c for c in started if isinstance(c, _Child)]
        failed = [e for e in started if isinstance(e, BaseException)]
        if failed:
            await self.stop()
            raise failed[0]
        self._pusher = asyncio.create_task(self._push_channels(), name="worker-channels")
        self.services.metrics.gather = self.metrics
        log.info("worker processes started", extra={
            "mllp_workers": sum(c.role.mllp for c in self._children) + 1,
            "http_workers": sum(c.role.http for c in self._children) + 1,
        })

    async def _spawn(self, role: Role) -> _Child:
        ours, theirs = socket.socketpair()
        # the connections a balancer hands over come on a socket pair of their own, one per port
        pairs = {
            "mllp": handoff_pair() if role.mllp and self.balancer is not None else None,
            "http": handoff_pair() if role.http and self.http is not None else None,
        }
        passed = [theirs] + [pair[1] for pair in pairs.values() if pair is not None]
        argv = [str(theirs.fileno())] + [str(pair[1].fileno()) if pair else "-" for pair in pairs.values()]

        def close_handing() -> None:
            for pair in pairs.values():
                if pair is not None:
                    pair[0].close()

        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "huizhen.workers", *argv,
                pass_fds=[s.fileno() for s in passed], stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            close_handing()
            raise
        finally:
            for s in passed:
                s.close()
        link = await Link.open(ours, f"worker {role.number}")
        child = _Child(role, process, link)
        ready = asyncio.get_running_loop().create_future()

        async def on_ready(_: dict[str, Any]) -> None:
            if not ready.done():
                ready.set_result(True)

        async def on_metrics(_: dict[str, Any]) -> str:
            return (await self.metrics()).decode()

        link.handlers["ready"] = on_ready
        link.handlers["ask:metrics"] = on_metrics  # /metrics answered by the child
        if isinstance(self.services.bus, HubBus):
            self.services.bus.attach(link)
        await link.send(frame("hello", number=role.number, mllp=role.mllp, http=role.http,
                              settings=settings_document(self.settings)))
        child.reading = asyncio.create_task(self._read(child), name=f"worker-{role.number}-link")
        try:
            async with asyncio.timeout(_START_TIMEOUT_S):
                await asyncio.wait({ready, child.reading}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            pass
        if not ready.done():
            close_handing()
            await self._end(child, kill=True)
            raise RuntimeError(f"worker {role.number} did not start (exit code {process.returncode})")
        for pair, balancer in ((pairs["mllp"], self.balancer), (pairs["http"], self.http)):
            if pair is not None and balancer is not None:
                balancer.add(pair[0])
        await link.send(frame("channels", channels=_channel_document(self.services.channels)))
        return child

    async def _read(self, child: _Child) -> None:
        await child.link.run()
        if not self._stopping:  # it died: its connections are gone, the others serve on until it is back
            log.error("worker %d (pid %d) ended its link unexpectedly", child.role.number, child.process.pid)
            task = asyncio.create_task(self._restart(child), name=f"worker-{child.role.number}-restart")
            self._restarting.add(task)
            task.add_done_callback(self._restarting.discard)

    async def _restart(self, dead: _Child) -> None:
        """Reap ``dead`` and start its role again, after a pause that doubles while children die young."""
        if dead in self._children:
            self._children.remove(dead)
        dead.reading = None  # this task's own caller: it ends by itself
        await self._end(dead, kill=True)
        number = dead.role.number
        young = time.monotonic() - dead.started < _YOUNG_S
        pause = self._pause.get(number, _RESTART_FIRST_S) if young else _RESTART_FIRST_S
        while not self._stopping:
            log.warning("worker %d ended (exit code %s); starting it again in %.0f s", number,
                        dead.process.returncode, pause)
            await asyncio.sleep(pause)
            self._pause[number] = pause = min(pause * 2, _RESTART_MAX_S)
            if self._stopping:
                return
            try:
                child = await self._spawn(dead.role)
            except Exception:
                log.exception("worker %d could not be started again", number)
                continue
            if self._stopping:  # stop() ran meanwhile and did not see this one
                await self._end(child)
                return
            self._children.append(child)
            self.services.metrics.worker_restarts.inc()
            log.warning("worker %d started again (pid %d)", number, child.process.pid)
            return

    async def _push_channels(self) -> None:
        while True:
            await asyncio.sleep(_CHANNELS_EVERY_S)
            now = _channel_document(self.services.channels)
            if now != self._channels_sent:
                self._channels_sent = now
                line = frame("channels", channels=now)
                for child in self._children:
                    await child.link.send(line)

    async def metrics(self) -> bytes:
        """Every process's exposition, summed (the database gauges are read here, once)."""
        services = self.services
        await services.metrics.refresh(services.store, services.channels)
        asked = [c.link.ask("samples") for c in self._children if not c.link.closed]
        texts = [services.metrics.exposition().decode()]
        for answer in await asyncio.gather(*asked, return_exceptions=True):
            if isinstance(answer, str):
                texts.append(answer)
            else:
                log.warning("a worker did not report its metrics: %r", answer)
        return merge_expositions(texts)

    async def stop(self) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
        self.services.metrics.gather = None
        self._stopping = True
        for task in list(self._restarting):
            task.cancel()
        await asyncio.gather(*self._restarting, return_exceptions=True)
        children, self._children = self._children, []
        for child in children:  # EOF: each child stops listening and finishes what it holds
            child.link.writer.close()
        for child in children:
            await self._end(child)

    async def _end(self, child: _Child, *, kill: bool = False) -> None:
        child.link.writer.close()
        if kill and child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                child.process.kill()
        try:
            async with asyncio.timeout(_STOP_GRACE_S):
                await child.process.wait()
        except TimeoutError:
            log.warning("worker %d did not stop in time; killed", child.process.pid)
            child.process.kill()
            await child.process.wait()
        if isinstance(self.services.bus, HubBus):
            self.services.bus.detach(child.link)
        if child.reading is not None:
            child.reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await child.reading


# -- the child's side -------------------------------------------------------------------------


def _take_channels(services: Services, doc: dict[str, Any]) -> None:
    for name, fields in doc["channels"].items():
        state = services.channels.get(name)
        if state is None or name in _OWN_CHANNELS:
            continue
        at = fields.get("last_activity_at")
        fields = {**fields, "last_activity_at": datetime.fromisoformat(at) if at else None}
        for key, value in fields.items():
            if hasattr(state, key):
                setattr(state, key, value)


@contextlib.asynccontextmanager
async def _http(services: Services, handed: socket.socket) -> AsyncIterator[None]:
    """uvicorn serving the connections the parent's balancer hands over ``handed``."""
    from huizhen.app import build_app
    from huizhen.server import http_config

    config = http_config(build_app(services), services.settings, timeout_graceful_shutdown=int(_STOP_GRACE_S / 2))
    server = AdoptingServer(config, signals=False)  # the parent decides when a child stops
    adopter = Adopter(server, handed, name="HTTP")

    async def start_adopting() -> None:
        adopter.start()

    async def stop_adopting() -> None:
        adopter.stop()

    server.on_started, server.on_stopping = start_adopting, stop_adopting
    serving = asyncio.create_task(server.serve(sockets=[]), name="worker-http")
    try:
        while not server.started:
            if serving.done():
                serving.result()
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        await serving  # its lifespan closes the services


async def _serve_child(sock: socket.socket, handed: socket.socket | None, http: socket.socket | None) -> None:
    from huizhen.app import create_services
    from huizhen.logs import configure_logging
    from huizhen.ops.mappings import watcher as mappings_watcher
    from huizhen.server import mllp_server

    link = await Link.open(sock, "parent")
    hello_line = await link.reader.readline()
    if not hello_line:
        return
    hello = json.loads(hello_line)
    settings = Settings.model_validate(hello["settings"])
    link.name = f"worker {hello['number']}"
    configure_logging(settings.log_level)
    bus = None if settings.broker_url else LinkBus(link)
    reading = asyncio.create_task(link.run(), name="worker-link")  # the hub's events from now on
    services = await create_services(settings, migrate_db=False, bus=bus)

    async def channels(doc: dict[str, Any]) -> None:
        _take_channels(services, doc)

    async def samples(_: dict[str, Any]) -> str:
        return services.metrics.exposition().decode()

    async def merged() -> bytes:
        text = await link.ask("metrics")
        return text.encode() if isinstance(text, str) else services.metrics.exposition()

    link.handlers["channels"] = channels
    link.handlers["ask:samples"] = samples
    services.metrics.gather = merged
    async with contextlib.AsyncExitStack() as stack:  # stopped in reverse: MLLP first, the services last
        if hello["http"] and http is not None:  # the app's lifespan closes the services
            await stack.enter_async_context(_http(services, http))
        else:
            stack.push_async_callback(services.close)
        await stack.enter_async_context(mappings_watcher(services))
        if hello["mllp"] and handed is not None:  # connections come from the parent's balancer
            server = mllp_server(services)
            await server.start(listen=False)
            services.metrics.watch_mllp(server)
            stack.push_async_callback(server.stop)
            adopter = Adopter(server, handed)
            adopter.start()
            stack.callback(adopter.stop)
        await link.send(frame("ready"))
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)  # as in the parent (huizhen.server.run)
        await reading  # until the parent closes the socket, or dies


def main() -> None:
    os.umask(0o077)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    # the link to the parent, then the MLLP and the HTTP connections' socket pairs ("-": none)
    mllp, http = (socket.socket(fileno=int(a)) if a != "-" else None for a in sys.argv[2:4])
    asyncio.run(_serve_child(socket.socket(fileno=int(sys.argv[1])), mllp, http))


if __name__ == "__main__":
    main()
