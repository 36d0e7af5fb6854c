"""One port, several processes: each new connection goes to the process serving the fewest.

Used for the MLLP port and the HTTP port of the worker processes
(:mod:`huizhen.workers`). Why not ``SO_REUSEPORT`` on every process: the kernel
picks the process by a hash of the connection's addresses, so a few long-lived
connections (an HIS keeps its MLLP connection open for days; 8 keep-alive HTTP
clients) often land 3–1 or 6–2 on two processes, one busy and one idle. Nor one
listening socket shared by all: asyncio's accept loop takes up to ``backlog``
connections per wake-up, so whoever wakes first takes them all. Here the parent
alone listens (:class:`Balancer`); it hands each connection it accepts to the
process serving the fewest at that moment, itself or a child, whose
:class:`Adopter` receives the socket over a Unix socket pair (its file
descriptor passed with ``SCM_RIGHTS``) and has its server serve it (an
:class:`Adoptive`: the MLLP server, or uvicorn's, TLS handshake included).

On that pair a child answers each connection it takes (a byte back), and each
connection that ends (another byte), so the counts stay current. The parent
keeps its own descriptor of a connection until the child has taken it: a child
that dies with connections not yet taken does not take them along; they are
handed again, to another process. A connection stays where it was handed: an
MLLP sender's messages still apply in order, a WebSocket stays with its
subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

_BACKLOG = 2048
_ENDED = b"x"  # a child to the parent: one of the connections it was handed has ended
_TAKEN = b"t"  # a child to the parent: it holds the next connection handed to it
_HANDED = b"c"  # the parent to a child: the data that carries a connection's descriptor


class Adoptive(Protocol):
    async def adopt(self, sock: socket.socket, on_closed: Callable[[], None]) -> None:
        """Serve ``sock``, accepted elsewhere; call ``on_closed`` once it has ended, however it ended."""


def handoff_pair() -> tuple[socket.socket, socket.socket]:
    """The parent's and the child's ends of the socket pair that hands connections over."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


@dataclass(eq=False)
class _Child:
    channel: socket.socket
    serving: int = 0
    untaken: deque[socket.socket] = field(default_factory=deque)  # handed, not yet taken: ours to close


class Balancer:
    """The parent's side: listens on ``host:port`` and spreads the connections over ``local`` and the children.

    ``name`` ("MLLP", "HTTP") is for the logs.
    """

    def __init__(self, local: Adoptive, host: str, port: int, *, name: str = "MLLP") -> None:
        self._local = local
        self._host, self._port = host, port
        self._name = name
        self._local_serving = 0
        self._children: list[_Child] = []
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._adopting: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1]) if self._sock is not None else self._port

    def listen(self) -> None:
        """Bind and listen (port 0: any free one), not accepting yet: connections wait in the backlog."""
        if self._sock is not None:
            return
        family, kind, proto, _, address = socket.getaddrinfo(
            self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    async def start(self) -> None:
        """Listen (if not yet) and accept."""
        self.listen()
        assert self._sock is not None
        self._accepting = asyncio.create_task(self._accept(self._sock), name=f"{self._name.lower()}-balancer")
        log.info("%s listener started", self._name, extra={"port": self.port, "balanced": True})

    def add(self, channel: socket.socket) -> None:
        """A child now serves: ``channel`` is the parent's end of its :func:`handoff_pair`."""
        channel.setblocking(False)
        child = _Child(channel)
        asyncio.get_running_loop().add_reader(channel.fileno(), self._on_message, child)
        self._children.append(child)

    async def stop(self) -> None:
        """Stop accepting; the connections already handed over are their process's to end."""
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for child in self._children:
            self._drop(child)

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:  # out of descriptors, a connection reset before it was taken…
                log.warning("%s accept failed: %s", self._name, type(exc).__name__)
                await asyncio.sleep(0.1)
                continue
            self._hand(conn)

    def _hand(self, conn: socket.socket) -> None:
        # on a tie a child takes it: the parent has other work too (DICOM, the outbound queue, the hub)
        for child in sorted(self._children, key=lambda c: c.serving):
            if child.serving > self._local_serving:
                break
            try:
                socket.send_fds(child.channel, [_HANDED], [conn.fileno()])
            except OSError as exc:  # gone, or not reading: the next one, or the parent itself
                log.warning("%s connection not handed to a worker: %s", self._name, type(exc).__name__)
                continue
            child.serving += 1
            child.untaken.append(conn)  # closed once the child has its own descriptor of it
            return
        self._local_serving += 1
        task = asyncio.create_task(self._local.adopt(conn, self._local_ended), name=f"{self._name.lower()}-adopt")
        self._adopting.add(task)
        task.add_done_callback(self._adopting.discard)

    def _local_ended(self) -> None:
        self._local_serving -= 1

    def _on_message(self, child: _Child) -> None:
        while True:
            try:
                data = child.channel.recv(16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the child has gone: it gets no more
                self._gone(child)
                return
            if data == _TAKEN:
                if child.untaken:
                    child.untaken.popleft().close()
            else:
                child.serving -= 1

    def _gone(self, child: _Child) -> None:
        untaken, child.untaken = list(child.untaken), deque()
        self._drop(child)
        self._children.remove(child)
        lost = child.serving - len(untaken)
        if lost > 0:
            log.error("%s worker gone with %d connection(s) it was serving", self._name, lost)
        if untaken:
            log.warning("%s worker gone before taking %d connection(s): handed again", self._name, len(untaken))
        for conn in untaken:
            self._hand(conn)

    def _drop(self, child: _Child) -> None:
        with contextlib.suppress(ValueError, RuntimeError):
            asyncio.get_running_loop().remove_reader(child.channel.fileno())
        child.channel.close()
        while child.untaken:
            child.untaken.popleft().close()


class Adopter:
    """A child's side: serves on ``server`` the connections the parent hands over ``channel``."""

    def __init__(self, server: Adoptive, channel: socket.socket, *, name: str = "MLLP") -> None:
        self._server = server
        self._channel = channel
        self._name = name
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._channel.setblocking(False)
        asyncio.get_running_loop().add_reader(self._channel.fileno(), self._receive)

    def stop(self) -> None:
        if self._channel.fileno() >= 0:
            asyncio.get_running_loop().remove_reader(self._channel.fileno())
            self._channel.close()

    def _receive(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self._channel, 16, 8)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            for fd in fds:
                self._send(_TAKEN)
                task = asyncio.create_task(self._server.adopt(socket.socket(fileno=fd), self._ended),
                                           name=f"{self._name.lower()}-adopt")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not data:  # the parent has gone (the link tells the child to stop)
                self.stop()
                return

    def _ended(self) -> None:
        self._send(_ENDED)

    def _send(self, what: bytes) -> None:
        if self._channel.fileno() >= 0:
            with contextlib.suppress(OSError):
                self._channel.send(what)
