"""With ``mllp_workers = 2`` the child's events reach the parent's bus (GraphQL subscriptions read it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from huizhen.adapters.hl7_send import ack_code
from huizhen.adapters.mllp_client import MllpClient
from huizhen.integration.engine import MESSAGE_TOPIC
from tests.e2e.test_mllp_workers import adt
from tests.helpers import running_server

CONNECTIONS = 12  # spread by the kernel over both processes: all on one is a 1-in-2048 chance


async def test_every_message_event_reaches_the_parent_bus(tmp_path: Path, db_url: str) -> None:
    async with running_server(tmp_path / "data", db_url, mllp_workers=2) as server:
        events = server.services.bus.subscribe(MESSAGE_TOPIC)
        port = server.ports["mllp"]

        async def send(n: int) -> str:
            async with MllpClient("127.0.0.1", port, ack_timeout_s=60) as client:
                return ack_code(await client.send(adt(f"EV-{n:02d}", f"EV{n:02d}")))

        assert await asyncio.gather(*(send(n) for n in range(CONNECTIONS))) == ["AA"] * CONNECTIONS
        seen: set[str] = set()
        async with asyncio.timeout(30):
            while len(seen) < CONNECTIONS:
                event = await events.__anext__()
                seen.add(event.data["control_id"])
        events.close()
        assert seen == {f"EV-{n:02d}" for n in range(CONNECTIONS)}
        async with server.services.store.read() as repo:
            page = await repo.journal.search(channel="mllp", first=100)
        assert {m.peer for m, _ in page.items} and page.total == CONNECTIONS
