"""MLLP worker processes: more cores for HL7 ingest behind the one MLLP port.

With ``mllp_workers = N`` the server process and N - 1 children each listen
on the MLLP port (``SO_REUSEPORT``: the kernel spreads new connections over
them). A connection stays with the process that accepted it, so its messages
still apply in order; the duplicate check and the effects are one transaction
in the shared database (PostgreSQL row locks, or on SQLite the cross-process
write lock of :mod:`huizhen.integration.write_lock`), so "nothing twice" holds
across processes; each ACK is written after its own commit, as before.

A child gets its settings from the parent over a socket pair, answers
``READY`` once it listens, and sends its bus events back as JSON lines, which
the parent publishes (with a Redis broker, the child publishes there itself).
When that socket closes — the parent shuts down, or dies, even by SIGKILL —
the child stops listening, finishes the frames in hand and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys

from huizhen.integration.events import Event, EventBus, InProcessBus
from huizhen.settings import Settings

log = logging.getLogger(__name__)

_READY = b"READY\n"
_START_TIMEOUT_S = 60.0
_STOP_GRACE_S = 10.0


class RelayBus(InProcessBus):
    """A worker's bus: events go to the parent process, which publishes them to its subscribers."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self._writer = writer

    async def publish(self, event: Event) -> None:
        await super().publish(event)
        if not self._writer.is_closing():
            self._writer.write(event.encode().encode() + b"\n")
            await self._writer.drain()


class _Child:
    def __init__(self, process: asyncio.subprocess.Process, writer: asyncio.StreamWriter) -> None:
        self.process = process
        self.writer = writer
        self.relay: asyncio.Task[None] | None = None


class MllpWorkers:
    """The parent's side: starts ``count`` children and relays their events to ``bus``."""

    def __init__(self, settings: Settings, bus: EventBus, count: int) -> None:
        self.settings = settings  # mllp_port: the port the parent bound
        self.bus = bus
        self.count = count
        self._children: list[_Child] = []

    async def start(self) -> None:
        try:
            for n in range(self.count):
                self._children.append(await self._spawn(n + 1))
        except BaseException:
            await self.stop()
            raise
        log.info("MLLP worker processes started", extra={"workers": self.count, "port": self.settings.mllp_port})

    async def _spawn(self, number: int) -> _Child:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "huizhen.mllp_workers", str(theirs.fileno()),
                pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        child = _Child(process, writer)
        writer.write(self.settings.model_dump_json().encode() + b"\n")
        await writer.drain()
        try:
            async with asyncio.timeout(_START_TIMEOUT_S):
                ready = await reader.readline()
        except TimeoutError:
            ready = b""
        if ready != _READY:
            process.kill()
            await process.wait()
            raise RuntimeError(f"MLLP worker {number} did not start (exit code {process.returncode})")
        child.relay = asyncio.create_task(self._relay(reader, number), name=f"mllp-worker-{number}-events")
        return child

    async def _relay(self, reader: asyncio.StreamReader, number: int) -> None:
        while line := await reader.readline():
            try:
                event = Event.decode(line)
            except (ValueError, KeyError):
                log.warning("ignored a malformed event from MLLP worker %d", number)
                continue
            await self.bus.publish(event)
        log.info("MLLP worker %d closed its event stream", number)

    async def stop(self) -> None:
        children, self._children = self._children, []
        for child in children:  # EOF: each child stops listening and finishes what it holds
            child.writer.close()
        for child in children:
            try:
                async with asyncio.timeout(_STOP_GRACE_S):
                    await child.process.wait()
            except TimeoutError:
                log.warning("MLLP worker %d did not stop in time; killed", child.process.pid)
                child.process.kill()
                await child.process.wait()
            if child.relay is not None:
                child.relay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await child.relay


async def _serve_child(sock: socket.socket) -> None:
    from huizhen.app import create_services
    from huizhen.logs import configure_logging
    from huizhen.server import mllp_server

    reader, writer = await asyncio.open_connection(sock=sock)
    settings = Settings.model_validate_json(await reader.readline())
    configure_logging(settings.log_level)
    services = await create_services(settings, migrate_db=False,
                                     bus=None if settings.broker_url else RelayBus(writer))
    try:
        server = mllp_server(services, reuse_port=True)
        await server.start()
        try:
            writer.write(_READY)
            await writer.drain()
            gc.freeze()
            gc.set_threshold(50_000, 20, 100)  # as in the parent (huizhen.server.run)
            await reader.read()  # until the parent closes the socket, or dies
        finally:
            await server.stop()
    finally:
        await services.close()


def main() -> None:
    os.umask(0o077)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    asyncio.run(_serve_child(socket.socket(fileno=int(sys.argv[1]))))


if __name__ == "__main__":
    main()
