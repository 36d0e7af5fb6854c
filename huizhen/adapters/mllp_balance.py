"""One MLLP port, several processes: each new connection goes to the process serving the fewest.

Why not ``SO_REUSEPORT`` on every process: the kernel picks the process by a
hash of the connection's addresses, so a few long-lived senders (an HIS keeps
its connection open for days) often land 3–1 or 4–0 on two processes, one busy
and one idle. Nor one listening socket shared by all: asyncio's accept loop
takes up to ``backlog`` connections per wake-up, so whoever wakes first takes
them all. Here the parent alone listens (:class:`Balancer`); it hands each
connection it accepts to the process serving the fewest at that moment, itself
or a child, whose :class:`Adopter` receives the socket over a Unix socket pair
(its file descriptor passed with ``SCM_RIGHTS``) and has its
:class:`~huizhen.adapters.mllp.MllpServer` serve it, TLS handshake included.
A process reports each connection that ends (a byte back on that pair), so the
counts stay current. A connection stays where it was handed: its messages
still apply in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass

from huizhen.adapters.mllp import MllpServer

log = logging.getLogger(__name__)

_BACKLOG = 2048
_ENDED = b"x"  # a child to the parent: one of the connections it was handed has ended
_HANDED = b"c"  # the parent to a child: the data that carries a connection's descriptor


def handoff_pair() -> tuple[socket.socket, socket.socket]:
    """The parent's and the child's ends of the socket pair that hands connections over."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


@dataclass(eq=False)
class _Child:
    channel: socket.socket
    serving: int = 0


class Balancer:
    """The parent's side: listens on ``host:port`` and spreads the connections over ``local`` and the children."""

    def __init__(self, local: MllpServer, host: str, port: int) -> None:
        self._local = local
        self._host, self._port = host, port
        self._local_serving = 0
        self._children: list[_Child] = []
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._adopting: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1]) if self._sock is not None else self._port

    async def start(self) -> None:
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
        self._accepting = asyncio.create_task(self._accept(sock), name="mllp-balancer")
        log.info("MLLP listener started", extra={"port": self.port, "balanced": True})

    def add(self, channel: socket.socket) -> None:
        """A child now serves MLLP: ``channel`` is the parent's end of its :func:`handoff_pair`."""
        channel.setblocking(False)
        child = _Child(channel)
        asyncio.get_running_loop().add_reader(channel.fileno(), self._on_ended, child)
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
                log.warning("MLLP accept failed: %s", type(exc).__name__)
                await asyncio.sleep(0.1)
                continue
            self._hand(conn)

    def _hand(self, conn: socket.socket) -> None:
        # on a tie a child takes it: the parent has other work too (HTTP, DICOM, the outbound queue)
        for child in sorted(self._children, key=lambda c: c.serving):
            if child.serving > self._local_serving:
                break
            try:
                socket.send_fds(child.channel, [_HANDED], [conn.fileno()])
            except OSError as exc:  # gone, or not reading: the next one, or the parent itself
                log.warning("MLLP connection not handed to a worker: %s", type(exc).__name__)
                continue
            child.serving += 1
            conn.close()  # the child holds its own descriptor of it now
            return
        self._local_serving += 1
        task = asyncio.create_task(self._local.adopt(conn, self._local_ended), name="mllp-adopt")
        self._adopting.add(task)
        task.add_done_callback(self._adopting.discard)

    def _local_ended(self) -> None:
        self._local_serving -= 1

    def _on_ended(self, child: _Child) -> None:
        while True:
            try:
                data = child.channel.recv(16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the child has gone: it gets no more
                self._drop(child)
                self._children.remove(child)
                return
            child.serving -= 1

    def _drop(self, child: _Child) -> None:
        with contextlib.suppress(ValueError, RuntimeError):
            asyncio.get_running_loop().remove_reader(child.channel.fileno())
        child.channel.close()


class Adopter:
    """A child's side: serves on ``server`` the connections the parent hands over ``channel``."""

    def __init__(self, server: MllpServer, channel: socket.socket) -> None:
        self._server = server
        self._channel = channel
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
                task = asyncio.create_task(self._server.adopt(socket.socket(fileno=fd), self._ended),
                                           name="mllp-adopt")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not data:  # the parent has gone (the link tells the child to stop)
                self.stop()
                return

    def _ended(self) -> None:
        with contextlib.suppress(OSError):
            self._channel.send(_ENDED)
