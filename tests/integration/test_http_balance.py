"""HTTP connections handed over by the balancer, over real sockets: two uvicorn servers in one
process stand for the parent and a child.

The "child" gets its connections exactly as a worker process does, their file
descriptors passed over a Unix socket pair to its Adopter; each server's app
answers with its own name, so a test sees who served a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import trustme
import uvicorn
import websockets

from huizhen.adapters.balance import Adopter, Balancer, handoff_pair
from huizhen.adapters.http_adopt import AdoptingServer

HOST = "127.0.0.1"


def named(name: str) -> Any:
    """An ASGI app answering every request, and every WebSocket message, with ``name``."""
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await receive()
            body = name.encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            while (message := await receive())["type"] == "websocket.receive":
                await send({"type": "websocket.send", "text": f"{name}:{message.get('text')}"})

    return app


@contextlib.asynccontextmanager
async def running(name: str, tls: dict[str, Any]) -> AsyncIterator[AdoptingServer]:
    server = AdoptingServer(uvicorn.Config(named(name), lifespan="off", log_config=None, **tls), signals=False)
    started = asyncio.Event()

    async def on_started() -> None:
        started.set()

    server.on_started = on_started
    serving = asyncio.create_task(server.serve(sockets=[]))
    await asyncio.wait_for(started.wait(), 30)
    try:
        yield server
    finally:
        server.should_exit = True
        await serving


@contextlib.asynccontextmanager
async def parent_and_child(tls: dict[str, Any] | None = None,
                           adopting: bool = True) -> AsyncIterator[tuple[Balancer, socket.socket]]:
    """The balancer (the parent serving too) and a child; ``adopting=False``: a child that takes nothing."""
    async with running("parent", tls or {}) as local, running("child", tls or {}) as child:
        handing, handed = handoff_pair()
        adopter = Adopter(child, handed, name="HTTP")
        if adopting:
            adopter.start()
        balancer = Balancer(local, HOST, 0, name="HTTP")
        await balancer.start()
        balancer.add(handing)
        try:
            yield balancer, handed
        finally:
            await balancer.stop()
            adopter.stop()


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, tls: ssl.SSLContext | None = None) -> Connection:
        return cls(*await asyncio.open_connection(HOST, port, ssl=tls, server_hostname=HOST if tls else None))

    async def get(self) -> str:
        self.writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        return (await self.reader.readexactly(length)).decode()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def test_keep_alive_connections_are_spread_evenly() -> None:
    async with parent_and_child() as (balancer, _):
        connections = [await Connection.open(balancer.port) for _ in range(8)]  # all open at once
        for _ in range(3):  # each stays where it was handed
            served = await asyncio.gather(*(c.get() for c in connections))
            assert Counter(served) == {"parent": 4, "child": 4}
        firsts = [await c.get() for c in connections]
        assert firsts == served
        for c in connections:
            await c.close()


async def test_a_connection_that_ended_frees_its_place() -> None:
    async with parent_and_child() as (balancer, _):
        served = []
        for _ in range(4):  # one after the other: each finds both free, the child takes it
            c = await Connection.open(balancer.port)
            served.append(await c.get())
            await c.close()
            await asyncio.sleep(0.1)  # the child's report that it ended
        assert served == ["child"] * 4


async def test_websockets_upgrade_on_handed_connections_and_report_their_end() -> None:
    async with parent_and_child() as (balancer, _):
        url = f"ws://{HOST}:{balancer.port}/"
        async with websockets.connect(url) as first, websockets.connect(url) as second:
            await first.send("a")
            await second.send("b")
            assert [await first.recv(), await second.recv()] == ["child:a", "parent:b"]  # a tie: the child
        await asyncio.sleep(0.1)  # both ended as WebSockets: both free again, the child takes the next
        async with websockets.connect(url) as third:
            await third.send("c")
            assert await third.recv() == "child:c"


async def test_the_process_handed_a_connection_does_its_tls_handshake(tmp_path: Any) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert(HOST)
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "server.pem")
    client = ssl.create_default_context()
    ca.configure_trust(client)
    tls = {"ssl_certfile": str(tmp_path / "server.pem")}
    async with parent_and_child(tls) as (balancer, _):
        connections = [await Connection.open(balancer.port, client) for _ in range(2)]
        assert sorted(await asyncio.gather(*(c.get() for c in connections))) == ["child", "parent"]
        for c in connections:
            assert c.writer.get_extra_info("ssl_object") is not None
            await c.close()


async def test_connections_a_dead_child_had_not_taken_are_handed_again() -> None:
    async with parent_and_child(adopting=False) as (balancer, handed):
        connection = await Connection.open(balancer.port)
        answer = asyncio.ensure_future(connection.get())
        await asyncio.sleep(0.2)  # handed to the child, which takes nothing
        assert not answer.done()
        handed.close()  # the child dies with it untaken
        assert await answer == "parent"
        await connection.close()


async def test_shutdown_closes_the_handed_connections() -> None:
    async with running("parent", {}) as local:
        balancer = Balancer(local, HOST, 0, name="HTTP")
        local.on_stopping = balancer.stop
        await balancer.start()
        port = balancer.port
        idle, websocket = await Connection.open(port), await websockets.connect(f"ws://{HOST}:{port}/")
        assert await idle.get() == "parent"
        local.should_exit = True  # as on SIGTERM: the balancer stops, then uvicorn ends its connections
        assert await asyncio.wait_for(idle.reader.read(), 10) == b""
        await asyncio.wait_for(websocket.wait_closed(), 10)
        assert websocket.close_code == 1012  # "service restart"
        await idle.close()
        assert not await _accepts(port)


async def _accepts(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
