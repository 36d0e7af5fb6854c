"""Test doubles and a raw peer for MLLP tests over real sockets.

``EchoHandler`` is a FrameHandler that answers each frame with an ACK-like
payload naming the frame's length and digest, so the order of answers can be
checked without parsing HL7. ``RawPeer`` is a bare socket for byte-level
tricks a well-behaved client would never do.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable

from huizhen.adapters.mllp import MllpServer, PeerInfo, RejectReason
from huizhen.adapters.mllp_framing import Event, Frame, MllpDecoder

HOST = "127.0.0.1"
MSG = (
    b"MSH|^~\\&|HIS|TOWN|HUIZHEN|HZ|20240101120000||ADT^A01|MSG0001|P|2.5\r"
    b"PID|1||123456^^^TOWN^MR||ZHANG^SAN||19800101|M\r"
    b"PV1|1|I|WARD1^101^1\r"
)


def message(n: int, tag: bytes = b"") -> bytes:
    return MSG.replace(b"MSG0001", b"MSG%04d" % n) + tag


def expected_ack(payload: bytes) -> bytes:
    return b"MSA|AA|%d|%s" % (len(payload), hashlib.sha256(payload).hexdigest()[:12].encode())


class EchoHandler:
    """Answers every frame; ``BOOM`` raises, ``WAIT`` waits for ``release``, ``SLOW`` pads 1 MiB."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes]] = []
        self.rejected: list[tuple[RejectReason, bytes]] = []
        self.peers: list[PeerInfo] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def on_frame(self, payload: bytes, peer: PeerInfo) -> bytes | None:
        if b"BOOM" in payload:
            raise RuntimeError("handler failure")
        if b"WAIT" in payload:
            self.entered.set()
            await self.release.wait()
        if b"SILENT" in payload:
            return None
        self.frames.append((peer.connection_id, payload))
        self.peers.append(peer)
        ack = expected_ack(payload)
        return ack + b"P" * (1 << 20) if b"SLOW" in payload else ack

    async def on_rejected(self, reason: RejectReason, head: bytes, peer: PeerInfo) -> bytes | None:
        self.rejected.append((reason, head))
        return b"MSA|AR|%s|%d" % (reason.value.encode(), len(head))

    def handled_on(self, connection_id: str) -> int:
        return sum(1 for cid, _ in self.frames if cid == connection_id)


class RawPeer:
    """A bare socket peer, for byte-level tricks the client would never do."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = MllpDecoder()
        self.answers: list[bytes] = []

    @classmethod
    async def connect(cls, port: int) -> RawPeer:
        return cls(*await asyncio.open_connection(HOST, port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_answers(self, count: int) -> list[bytes]:
        async with asyncio.timeout(10):
            while len(self.answers) < count:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("closed")
                self._collect(self.decoder.feed(data))
        taken, self.answers = self.answers[:count], self.answers[count:]
        return taken

    async def closed_by_server(self) -> bool:
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(10):
                while data := await self.reader.read(65536):
                    self._collect(self.decoder.feed(data))
        return True

    def _collect(self, events: list[Event]) -> None:
        self.answers += [e.payload for e in events if isinstance(e, Frame)]

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def eventually(predicate: Callable[[], bool]) -> None:
    """Wait for a state the server reaches on its own (counters are plain numbers)."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


@contextlib.asynccontextmanager
async def serving(handler: EchoHandler, **options: object) -> AsyncIterator[MllpServer]:
    server = MllpServer(handler, HOST, 0, **options)  # type: ignore[arg-type]
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace_s=1.0)
