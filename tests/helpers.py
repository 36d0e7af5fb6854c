"""Test helpers: a real Huizhen HTTP server on a free port, and a small GraphQL client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from huizhen.app import Services, build_app, create_services
from huizhen.server import listeners
from huizhen.settings import Settings
from tests.conftest import free_port


@dataclass
class RunningServer:
    base_url: str
    services: Services
    ports: dict[str, int]

    def token(self, sub: str, *roles: str, facility: str | None = None, ttl: int | None = None) -> str:
        return self.services.tokens.issue(sub, list(roles) or ["primary_doctor"], facility, ttl)

    def client(self, token: str | None) -> GraphQLClient:
        return GraphQLClient(self.base_url, token)


@contextlib.asynccontextmanager
async def running_server(data_dir: Path, database_url: str, **overrides: Any) -> AsyncIterator[RunningServer]:
    """Start the real app under uvicorn on 127.0.0.1 in this event loop."""
    port = free_port()
    overrides.setdefault("mllp_port", free_port())
    overrides.setdefault("dicom_port", 0)
    overrides.setdefault("mllp_workers", 1)  # one process on either back end, unless a test asks for more
    settings = Settings(data_dir=data_dir, database_url=database_url, http_port=port, **overrides)
    services = await create_services(settings)
    config = uvicorn.Config(build_app(services), host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    async with listeners(services) as ports:
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        try:
            yield RunningServer(f"http://127.0.0.1:{port}", services, ports)
        finally:
            server.should_exit = True
            await task


class GraphQLClient:
    def __init__(self, base_url: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30)

    async def raw(self, query: str, **variables: Any) -> httpx.Response:
        return await self.http.post("/graphql", json={"query": query, "variables": variables})

    async def execute(self, query: str, **variables: Any) -> dict[str, Any]:
        """The ``data`` of a successful answer; raises with the errors otherwise."""
        body = (await self.raw(query, **variables)).json()
        if body.get("errors"):
            raise GraphQLErrors(body["errors"])
        data: dict[str, Any] = body["data"]
        return data

    async def error_code(self, query: str, **variables: Any) -> str:
        body = (await self.raw(query, **variables)).json()
        assert body.get("errors"), f"expected an error, got {body}"
        code: str = body["errors"][0]["extensions"]["code"]
        return code

    async def aclose(self) -> None:
        await self.http.aclose()


class GraphQLErrors(Exception):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors
