"""The balancer over real sockets: two MLLP servers in one process stand for the parent and a child.

The "child" gets its connections exactly as a worker process does, its file
descriptors passed over a Unix socket pair to its Adopter.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import Counter
from collections.abc import AsyncIterator

import trustme

from huizhen.adapters.balance import Adopter, Balancer, handoff_pair
from huizhen.adapters.mllp import MllpServer
from huizhen.adapters.mllp_client import MllpClient
from tests.integration.mllp_doubles import HOST, EchoHandler, expected_ack, message


@contextlib.asynccontextmanager
async def parent_and_child(
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[Balancer, EchoHandler, EchoHandler, Adopter]]:
    mine, theirs = EchoHandler(), EchoHandler()
    local, child = MllpServer(mine, HOST, 0, ssl_context=tls), MllpServer(theirs, HOST, 0, ssl_context=tls)
    await local.start(listen=False)
    await child.start(listen=False)
    handing, handed = handoff_pair()
    adopter = Adopter(child, handed)
    adopter.start()
    balancer = Balancer(local, HOST, 0)
    await balancer.start()
    balancer.add(handing)
    try:
        yield balancer, mine, theirs, adopter
    finally:
        await balancer.stop()
        adopter.stop()
        await child.stop()
        await local.stop()


async def send(port: int, n: int, count: int = 3) -> list[bytes]:
    async with MllpClient(HOST, port, ack_timeout_s=10) as client:
        return [await client.send(message(n * 100 + i)) for i in range(count)]


def served(handler: EchoHandler) -> int:
    return len(Counter(connection for connection, _ in handler.frames))


async def test_connections_are_spread_evenly_and_each_keeps_its_order() -> None:
    async with parent_and_child() as (balancer, mine, theirs, _):
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(MllpClient(HOST, balancer.port, ack_timeout_s=10))
                       for _ in range(4)]  # all open at once, as long-lived senders are
            for round_ in range(3):
                answers = await asyncio.gather(*(c.send(message(n * 10 + round_)) for n, c in enumerate(clients)))
                assert answers == [expected_ack(message(n * 10 + round_)) for n in range(4)]
        assert served(mine) == served(theirs) == 2
        for handler in (mine, theirs):
            by_connection: dict[str, list[bytes]] = {}
            for connection, payload in handler.frames:
                by_connection.setdefault(connection, []).append(payload)
            for payloads in by_connection.values():
                assert payloads == sorted(payloads)  # MSG00n0, MSG00n1, MSG00n2: in the order sent


async def test_a_connection_that_ended_frees_its_place() -> None:
    async with parent_and_child() as (balancer, mine, theirs, _):
        for n in range(4):  # one after the other: each finds both processes free, the child takes it
            assert await send(balancer.port, n, 1) == [expected_ack(message(n * 100))]
            await asyncio.sleep(0.05)  # the child's report that it ended
        assert served(theirs) == 4 and served(mine) == 0


async def test_when_the_child_is_gone_the_parent_serves() -> None:
    async with parent_and_child() as (balancer, mine, theirs, adopter):
        adopter.stop()  # closes the child's end, as its death would
        await asyncio.sleep(0.05)
        assert await asyncio.gather(*(send(balancer.port, n) for n in range(3))) == [
            [expected_ack(message(n * 100 + i)) for i in range(3)] for n in range(3)]
        assert served(mine) == 3 and served(theirs) == 0


async def test_the_process_handed_a_connection_does_its_tls_handshake() -> None:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    async with parent_and_child(server) as (balancer, mine, theirs, _), contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(
            MllpClient(HOST, balancer.port, ssl_context=client, server_hostname="127.0.0.1", ack_timeout_s=10))
            for _ in range(2)]
        assert await asyncio.gather(*(c.send(message(n)) for n, c in enumerate(clients))) == [
            expected_ack(message(n)) for n in range(2)]
        assert served(mine) == served(theirs) == 1
        assert all(peer.tls for peer in mine.peers + theirs.peers)
