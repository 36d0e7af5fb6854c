"""A small GraphQL-over-WebSocket client for tests: ``graphql-transport-ws`` and legacy ``graphql-ws``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


class GraphQLSocket:
    def __init__(self, ws: ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self._ids = 0

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        while True:
            doc: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if doc.get("type") not in ("ka", "ping", "pong"):
                return doc

    async def init(self, payload: dict[str, Any] | None) -> dict[str, Any]:
        await self.send({"type": "connection_init", **({"payload": payload} if payload is not None else {})})
        return await self.receive()

    async def subscribe(self, query: str, **variables: Any) -> str:
        self._ids += 1
        sid = str(self._ids)
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        await self.send({"id": sid, "type": kind, "payload": {"query": query, "variables": variables}})
        return sid

    async def next(self, sid: str, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The next ``data`` of subscription ``sid``; raises on error or completion."""
        while True:
            doc = await self.receive(timeout)
            if doc.get("id") != sid:
                continue
            if doc["type"] in ("next", "data") and not doc["payload"].get("errors"):
                data: dict[str, Any] = doc["payload"]["data"]
                return data
            raise SubscriptionEnded(doc)

    async def nothing_for(self, sid: str, seconds: float) -> None:
        """Assert that ``sid`` receives nothing for a while (no duration is asserted, only silence)."""
        with contextlib.suppress(TimeoutError):
            doc = await self.next(sid, timeout=seconds)
            raise AssertionError(f"unexpected event {doc}")


class SubscriptionEnded(Exception):
    def __init__(self, doc: dict[str, Any]) -> None:
        super().__init__(doc)
        self.doc = doc


@contextlib.asynccontextmanager
async def graphql_socket(
    base_url: str, protocol: str = TRANSPORT_WS, *, query: str = "", headers: dict[str, str] | None = None,
) -> AsyncIterator[GraphQLSocket]:
    url = base_url.replace("http://", "ws://") + "/graphql" + (f"?{query}" if query else "")
    async with websockets.connect(url, subprotocols=[protocol], additional_headers=headers or {}) as ws:  # type: ignore[list-item]
        yield GraphQLSocket(ws, protocol)
