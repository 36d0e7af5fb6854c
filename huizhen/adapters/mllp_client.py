"""An asyncio MLLP client: one connection, many messages, one ACK each.

Used by ``huizhen send`` and by outbound channels (the ORU report back to a
HIS). ``send`` waits for the answer to each message; ``stream`` keeps up to
``window`` messages in flight (pipelining; ``window=1`` is plain MLLP
send-and-wait) and yields the answers in order, since an MLLP receiver answers
in order on one connection.

After a timeout, a protocol error or a lost connection the connection is
dropped, because a late answer would otherwise be taken for the next
message's; the next call reconnects. OS and TLS errors become
:class:`MllpConnectionError`.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from types import TracebackType

from huizhen.adapters.mllp_framing import (
    DEFAULT_MAX_FRAME_BYTES,
    AckTimeout,
    Frame,
    MllpConnectionError,
    MllpDecoder,
    MllpError,
    MllpProtocolError,
    Oversize,
    Truncated,
    encode,
)
from huizhen.adapters.mllp_tls import client_ssl_context

__all__ = ["MllpClient", "client_ssl_context"]

READ_SIZE = 64 * 1024


class MllpClient:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout_s: float = 10.0,
        ack_timeout_s: float = 30.0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self._host = host
        self._port = port
        self._ssl_context = ssl_context
        self._server_hostname = server_hostname
        self._connect_timeout_s = connect_timeout_s
        self._ack_timeout_s = ack_timeout_s
        self._max_frame_bytes = max_frame_bytes
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = MllpDecoder(max_frame_bytes)
        self._answers: collections.deque[bytes] = collections.deque()
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        """Open, as far as we know: the peer has not closed it (e.g. its idle timeout)."""
        return (
            self._writer is not None
            and not self._writer.is_closing()
            and self._reader is not None
            and not self._reader.at_eof()
        )

    async def connect(self) -> None:
        if self.connected:
            return
        await self.close()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                self._reader, self._writer = await asyncio.open_connection(
                    self._host,
                    self._port,
                    ssl=self._ssl_context,
                    server_hostname=self._server_hostname if self._ssl_context else None,
                )
        except TimeoutError as exc:
            raise MllpConnectionError(f"connect to {self._host}:{self._port} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            where = f"{self._host}:{self._port}"
            raise MllpConnectionError(f"cannot connect to {where}: {exc}") from exc
        self._decoder = MllpDecoder(self._max_frame_bytes)
        self._answers.clear()

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            writer.transport.abort()

    async def __aenter__(self) -> MllpClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(self, payload: bytes) -> bytes:
        """Send one message and return the answer's payload (unframed)."""
        frame = encode(payload)
        async with self._lock:
            await self.connect()
            try:
                await self._write(frame)
                return await self._read_answer()
            except BaseException:
                await self.close()
                raise

    async def receive(self, timeout_s: float | None = None) -> bytes | None:
        """The next answer on the connection (a second ACK of an enhanced-mode message),
        or None when none came within ``timeout_s`` (default: the ACK timeout)."""
        async with self._lock:
            if self._answers:
                return self._answers.popleft()
            if self._reader is None:
                return None
            try:
                async with asyncio.timeout(self._ack_timeout_s if timeout_s is None else timeout_s):
                    while not self._answers:
                        await self._read_more()
            except TimeoutError:
                return None
            except MllpError:
                await self.close()
                raise
            return self._answers.popleft()

    async def stream(
        self, payloads: Iterable[bytes] | AsyncIterable[bytes], *, window: int = 1
    ) -> AsyncGenerator[bytes, None]:
        """Send every payload, yielding each answer in order, ``window`` messages in flight.

        The connection is held until the iteration ends (wrap it in
        ``contextlib.aclosing`` when breaking early); do not ``send`` meanwhile.
        """
        if window < 1:
            raise ValueError("window must be at least 1")
        async with self._lock:
            await self.connect()
            in_flight = 0
            try:
                async for payload in _aiter(payloads):
                    while in_flight >= window:
                        yield await self._read_answer()
                        in_flight -= 1
                    await self._write(encode(payload))
                    in_flight += 1
                while in_flight:
                    yield await self._read_answer()
                    in_flight -= 1
            except BaseException:  # failed or stopped early: a late answer would confuse the next send
                await self.close()
                raise

    async def _write(self, frame: bytes) -> None:
        if self._writer is None:
            raise MllpConnectionError("not connected")
        try:
            self._writer.write(frame)
            async with asyncio.timeout(self._ack_timeout_s):
                await self._writer.drain()
        except TimeoutError as exc:
            raise AckTimeout("the peer stopped reading") from exc
        except OSError as exc:
            raise MllpConnectionError(f"connection lost while sending: {exc}") from exc

    async def _read_answer(self) -> bytes:
        try:
            async with asyncio.timeout(self._ack_timeout_s):
                while not self._answers:
                    await self._read_more()
        except TimeoutError as exc:
            await self.close()
            raise AckTimeout(f"no answer within {self._ack_timeout_s} s") from exc
        except MllpError:
            await self.close()
            raise
        return self._answers.popleft()

    async def _read_more(self) -> None:
        if self._reader is None:
            raise MllpConnectionError("not connected")
        try:
            data = await self._reader.read(READ_SIZE)
        except OSError as exc:
            raise MllpConnectionError(f"connection lost while waiting for the ACK: {exc}") from exc
        if not data:
            raise MllpConnectionError("the peer closed the connection before answering")
        for event in self._decoder.feed(data):
            if isinstance(event, Frame):
                self._answers.append(event.payload)
            elif isinstance(event, Oversize | Truncated):
                raise MllpProtocolError(f"unusable answer frame: {type(event).__name__}")
            # Garbage between answers is tolerated.


async def _aiter(items: Iterable[bytes] | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
