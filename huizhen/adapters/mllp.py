"""The MLLP listener: an asyncio TCP (optionally TLS) server that turns frames into handler calls.

This module knows framing and sockets, nothing of HL7. For each connection it
reads, decodes (:mod:`huizhen.adapters.mllp_framing`) and calls the
:class:`FrameHandler` one frame at a time: the next frame is not handed over
before the previous call returned and its answer was written and drained, so
messages on one connection are applied in order, and a client that does not
read its ACKs stops being read (TCP backpressure) without holding up anyone else.

Defined outcomes, each logged with the connection id and peer, never content:

- garbage before a start block: logged, skipped;
- oversize frame: :meth:`FrameHandler.on_rejected` may answer (an AR built from
  the head); the rest of the frame is discarded and the connection stays open;
- a start block before the end block: the cut frame goes to ``on_rejected``
  (``TRUNCATED``), the new frame is decoded;
- disconnect mid-frame: logged, nothing passed on;
- idle (between frames) or stalled (mid-frame) past its timeout, or an ACK not
  drained within the write timeout: the connection is closed;
- the handler raises: logged, that connection is closed, the listener serves on;
- over the connection limit: accepted, logged and closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from huizhen.adapters.mllp_framing import (
    DEFAULT_MAX_FRAME_BYTES,
    Event,
    Frame,
    Garbage,
    MllpDecoder,
    Oversize,
    Truncated,
    encode,
)
from huizhen.adapters.mllp_tls import certificate_identity, server_ssl_context
from huizhen.integration.errors import ConfigurationError

__all__ = [
    "FrameHandler",
    "MllpCounters",
    "MllpServer",
    "PeerInfo",
    "RejectReason",
    "server_ssl_context",
]

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024


class RejectReason(StrEnum):
    OVERSIZE = "oversize"
    TRUNCATED = "truncated"


@dataclass(frozen=True, slots=True)
class PeerInfo:
    connection_id: str
    host: str
    port: int
    tls: bool = False
    cert_subject: str | None = None  # RFC 4514, e.g. "CN=his.example,O=Town Clinic"
    cert_common_name: str | None = None
    cert_fingerprint: str | None = None  # SHA-256 of the DER certificate, hex
    cert_dns_names: tuple[str, ...] = ()  # subjectAltName DNS entries


class FrameHandler(Protocol):
    async def on_frame(self, payload: bytes, peer: PeerInfo) -> bytes | list[bytes] | None:
        """Handle one payload; return the answer (unframed, already encoded), several
        answers to be written as a frame each, in order, or None."""

    async def on_rejected(self, reason: RejectReason, head: bytes, peer: PeerInfo) -> bytes | None:
        """A frame that cannot be handled whole; ``head`` is its first bytes."""


@dataclass
class MllpCounters:
    """Running totals since start, for the metrics layer."""

    connections_open: int = 0
    connections_accepted: int = 0
    connections_refused: int = 0
    bytes_received: int = 0
    frames_received: int = 0
    acks_sent: int = 0
    garbage: int = 0
    oversize: int = 0
    truncated: int = 0
    timeouts: int = 0
    handler_errors: int = 0


@dataclass(eq=False)
class _Connection:
    peer: PeerInfo
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None = None
    busy: bool = False  # a frame is being handled or answered
    extra: Mapping[str, Any] = field(default_factory=dict)


class _Closed(Exception):
    """The connection must end (timeout, handler failure); already logged."""

    def __init__(self, abort: bool = False) -> None:
        super().__init__()
        self.abort = abort  # True: drop unsent bytes (the peer is not reading)


def _peer_info(connection_id: str, writer: asyncio.StreamWriter) -> PeerInfo:
    address = writer.get_extra_info("peername") or ("?", 0)
    host, port = str(address[0]), int(address[1])
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None:
        return PeerInfo(connection_id, host, port)
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return PeerInfo(connection_id, host, port, tls=True)
    identity = certificate_identity(der)
    return PeerInfo(
        connection_id,
        host,
        port,
        tls=True,
        cert_subject=identity.subject,
        cert_common_name=identity.common_name,
        cert_fingerprint=identity.fingerprint,
        cert_dns_names=identity.dns_names,
    )


class MllpServer:
    def __init__(
        self,
        handler: FrameHandler,
        host: str = "127.0.0.1",
        port: int = 2575,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        idle_timeout_s: float | None = 600.0,
        stall_timeout_s: float | None = 30.0,
        write_timeout_s: float | None = 30.0,
        max_connections: int = 256,
        ssl_context: ssl.SSLContext | None = None,
        name: str = "mllp",
        reuse_port: bool = False,
    ) -> None:
        """``idle_timeout_s`` applies between frames, ``stall_timeout_s`` inside one;
        ``reuse_port``: other processes may listen on the same port (the kernel spreads connections)."""
        if max_frame_bytes < 1 or max_connections < 1:
            raise ConfigurationError("max_frame_bytes and max_connections must be positive")
        self._handler = handler
        self._host = host
        self._port = port
        self._max_frame_bytes = max_frame_bytes
        self._idle_timeout_s = idle_timeout_s
        self._stall_timeout_s = stall_timeout_s
        self._write_timeout_s = write_timeout_s
        self._max_connections = max_connections
        self._ssl_context = ssl_context
        self._name = name
        self._reuse_port = reuse_port
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._running = False
        self._connections: dict[str, _Connection] = {}
        self._stopping = False
        self.counters = MllpCounters()

    @property
    def port(self) -> int:
        """The bound port (the OS-chosen one when started with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, *, listen: bool = True) -> None:
        """Start serving; ``listen=False``: only connections handed over by :meth:`adopt`."""
        if self._running:
            raise RuntimeError("MllpServer already started")
        self._stopping, self._running = False, True
        if not listen:
            return
        self._server = await asyncio.start_server(
            self._on_connect, self._host, self._port, ssl=self._ssl_context, reuse_port=self._reuse_port or None
        )
        log.info(
            "MLLP listener started",
            extra={
                "channel": self._name,
                "host": self._host,
                "port": self.port,
                "tls": self._ssl_context is not None,
            },
        )

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting; let frames being handled finish for up to ``grace_s``; close all."""
        server, self._server = self._server, None
        if not self._running:
            return
        self._running, self._stopping = False, True
        if server is not None:
            server.close()
        for connection in list(self._connections.values()):
            if not connection.busy and connection.task is not None:
                connection.task.cancel()
        tasks = [c.task for c in self._connections.values() if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        log.info("MLLP listener stopped", extra={"channel": self._name})

    async def __aenter__(self) -> MllpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def adopt(self, sock: socket.socket, on_closed: Callable[[], None] | None = None) -> None:
        """Serve a connection accepted elsewhere (:mod:`huizhen.adapters.balance`), TLS
        handshake included; ``on_closed`` is called once it has ended, however it ended."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**16, loop=loop)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await self._on_connect(reader, writer)
            finally:
                if on_closed is not None:
                    on_closed()

        protocol = asyncio.StreamReaderProtocol(reader, serve, loop=loop)
        try:
            await loop.connect_accepted_socket(lambda: protocol, sock, ssl=self._ssl_context)
        except OSError as exc:  # a failed TLS handshake (SSLError), a peer gone already
            log.info("MLLP connection lost before it was served: %s", type(exc).__name__,
                     extra={"channel": self._name})
            sock.close()
            if on_closed is not None:
                on_closed()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection_id = f"{self._name}-{next(self._ids)}"
        peer = _peer_info(connection_id, writer)
        extra = {
            "channel": self._name,
            "connection_id": connection_id,
            "peer": f"{peer.host}:{peer.port}",
            "cert_subject": peer.cert_subject,
        }
        if self._stopping or len(self._connections) >= self._max_connections:
            self.counters.connections_refused += 1
            log.warning(
                "MLLP connection refused: limit of %d reached or stopping",
                self._max_connections,
                extra=extra,
            )
            await _close(writer, abort=True)
            return
        connection = _Connection(peer, writer, asyncio.current_task(), extra=extra)
        self._connections[connection_id] = connection
        self.counters.connections_accepted += 1
        self.counters.connections_open += 1
        log.info("MLLP connection opened", extra=extra)
        abort = True
        try:
            await self._serve(connection, reader)
            abort = False
        except _Closed as closed:
            abort = closed.abort
        except asyncio.CancelledError:
            # Not re-raised: asyncio's stream callback (3.11) logs a cancelled task as an error.
            log.info("MLLP connection closed by shutdown", extra=extra)
        except OSError as exc:
            log.info("MLLP connection lost: %s", type(exc).__name__, extra=extra)
        finally:
            del self._connections[connection_id]
            self.counters.connections_open -= 1
            await _close(writer, abort=abort)

    async def _serve(self, connection: _Connection, reader: asyncio.StreamReader) -> None:
        decoder = MllpDecoder(self._max_frame_bytes)
        while not self._stopping:
            timeout = self._stall_timeout_s if decoder.in_frame else self._idle_timeout_s
            try:
                async with asyncio.timeout(timeout):
                    data = await reader.read(READ_SIZE)
            except TimeoutError:
                self.counters.timeouts += 1
                what = "stalled mid-frame" if decoder.in_frame else "idle"
                _warn(connection, "MLLP connection %s past its timeout, closing", what)
                raise _Closed from None
            if not data:
                for event in decoder.finish():
                    self._log_eof_event(event, connection)
                log.info("MLLP connection closed by peer", extra=connection.extra)
                return
            self.counters.bytes_received += len(data)
            connection.busy = True
            try:
                for event in decoder.feed(data):
                    await self._on_event(event, connection)
                    if self._stopping:
                        return
            finally:
                connection.busy = False

    async def _on_event(self, event: Event, connection: _Connection) -> None:
        peer = connection.peer
        try:
            if isinstance(event, Frame):
                self.counters.frames_received += 1
                answer = await self._handler.on_frame(event.payload, peer)
            elif isinstance(event, Garbage):
                self.counters.garbage += 1
                _warn(connection, "MLLP garbage before a start block skipped (%d bytes)", event.size)
                return
            elif isinstance(event, Oversize):
                self.counters.oversize += 1
                _warn(connection, "MLLP frame over %d bytes rejected", event.limit)
                answer = await self._handler.on_rejected(RejectReason.OVERSIZE, event.head, peer)
            else:
                self.counters.truncated += 1
                _warn(connection, "MLLP frame cut by a new start block (%d bytes)", event.size)
                answer = await self._handler.on_rejected(RejectReason.TRUNCATED, event.head, peer)
            frame = None if answer is None else _frames(answer)
        except Exception:
            self.counters.handler_errors += 1
            log.exception("MLLP handler failed, closing the connection", extra=connection.extra)
            raise _Closed from None
        if frame is not None:
            await self._write(frame, connection)

    async def _write(self, frame: bytes, connection: _Connection) -> None:
        writer = connection.writer
        writer.write(frame)
        # Fully handed to the socket, drain() cannot block (it only reports a lost
        # connection): the timeout, a timer per ACK, is armed only when bytes wait.
        timeout = self._write_timeout_s if writer.transport.get_write_buffer_size() else None
        try:
            async with asyncio.timeout(timeout):
                await writer.drain()
        except TimeoutError:
            self.counters.timeouts += 1
            _warn(connection, "MLLP peer does not read its ACKs, closing")
            raise _Closed(abort=True) from None
        self.counters.acks_sent += 1

    def _log_eof_event(self, event: Event, connection: _Connection) -> None:
        if isinstance(event, Truncated):
            self.counters.truncated += 1
            _warn(connection, "MLLP peer disconnected mid-frame (%d bytes dropped)", event.size)
        elif isinstance(event, Garbage):
            self.counters.garbage += 1
            _warn(connection, "MLLP garbage before end of stream skipped (%d bytes)", event.size)


def _frames(answer: bytes | list[bytes]) -> bytes | None:
    if isinstance(answer, bytes):
        return encode(answer)
    return b"".join(encode(a) for a in answer) or None


def _warn(connection: _Connection, message: str, *args: object) -> None:
    log.warning(message, *args, extra=connection.extra)


async def _close(writer: asyncio.StreamWriter, *, abort: bool) -> None:
    """Close the socket; abort (no flush) when the peer may never read what is pending."""
    if abort:
        writer.transport.abort()
    else:
        writer.close()
    with contextlib.suppress(OSError, TimeoutError, asyncio.CancelledError):
        async with asyncio.timeout(5.0):
            await writer.wait_closed()
