"""``huizhen serve``: one asyncio process running every enabled listener."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from huizhen.app import build_app, create_services
from huizhen.settings import Settings

log = logging.getLogger(__name__)


async def run(settings: Settings) -> None:
    services = await create_services(settings)
    log.info(
        "huizhen starting",
        extra={"env": settings.env.value, "database": services.store.dialect,
               "broker": "redis" if settings.broker_url else "in-process", "http_port": settings.http_port},
    )
    if settings.http_port == 0:
        log.info("HTTP listener disabled (http_port = 0)")
        try:
            await asyncio.Event().wait()
        finally:
            await services.close()
        return
    config = uvicorn.Config(
        build_app(services), host=settings.host, port=settings.http_port,
        log_config=None, lifespan="on", proxy_headers=False, server_header=False,
    )
    await uvicorn.Server(config).serve()
