"""Composition root: settings → data folder → store, bus, tokens, services → Starlette app.

Nothing is built at import time; ``create_services`` and ``build_app`` are
called by the CLI (``huizhen serve``) and by tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp

from huizhen import __version__
from huizhen.adapters.fhir_api import FhirUnauthorized, fhir_app
from huizhen.adapters.fhir_codec import FhirCodec
from huizhen.adapters.fhir_write import FhirWriter
from huizhen.adapters.hl7_channel import Hl7Codec
from huizhen.adapters.hl7_outbound import CHANNEL as OUTBOUND
from huizhen.adapters.hl7_outbound import OutboundSender, ReportQueue
from huizhen.adapters.http_auth import BearerAuth
from huizhen.graphql.app import graphql_app
from huizhen.graphql.http import BodyLimit, RequestId
from huizhen.integration import migrate
from huizhen.integration.consultations import ConsultationService
from huizhen.integration.crypto import load_or_create_keyring
from huizhen.integration.engine import Codec, InboundEngine
from huizhen.integration.errors import BadInput, NotFound
from huizhen.integration.events import EventBus, create_bus
from huizhen.integration.model import Message
from huizhen.integration.store import Store
from huizhen.mappings.codes import load_code_tables
from huizhen.mappings.hl7v2.context import MappingContext
from huizhen.mappings.hl7v2.registry import default_registry
from huizhen.rbac.identity import TokenService, load_or_create_signing_key
from huizhen.settings import Settings, parse_addresses

log = logging.getLogger(__name__)


@dataclass
class ChannelState:
    """What ``channels`` reports beside the journal counts: direction, run state, queue depth."""

    direction: str
    state: str = "stopped"
    queued: int = 0


@dataclass
class Services:
    settings: Settings
    store: Store
    bus: EventBus
    tokens: TokenService
    consultations: ConsultationService
    engine: InboundEngine
    codecs: dict[str, Codec] = field(default_factory=dict)
    channels: dict[str, ChannelState] = field(default_factory=dict)
    fhir: FhirWriter | None = None
    outbound: OutboundSender | None = None

    async def reprocess(self, message_id: str) -> Message:
        """Re-run a journaled ERROR message through its channel's current mappings."""
        async with self.store.read() as repo:
            found = await repo.journal.get(message_id)
        if found is None:
            raise NotFound("Message", message_id)
        codec = self.codecs.get(found.channel)
        if codec is None:
            raise BadInput(f"messages of channel {found.channel!r} cannot be reprocessed")
        return (await self.engine.reprocess(codec, message_id)).message

    async def close(self) -> None:
        await self.bus.close()
        await self.store.close()


def prepare_data_dir(settings: Settings) -> Path:
    """Create the data folder (mode 0700) and its secrets on first start."""
    data = settings.data_dir
    if not data.exists():
        data.mkdir(parents=True, mode=0o700)
        log.info("created data folder", extra={"path": str(data.resolve())})
    elif not data.is_dir():
        raise NotADirectoryError(f"data_dir {data} is not a directory")
    os.chmod(data, 0o700)
    return data


async def create_services(settings: Settings, *, migrate_db: bool = True) -> Services:
    data = prepare_data_dir(settings)
    keyring = load_or_create_keyring(data)
    signing_key = load_or_create_signing_key(data)
    url = settings.resolved_database_url
    if migrate_db:
        await asyncio.to_thread(migrate.upgrade, url)
    store = Store(url, keyring)
    bus = await create_bus(settings.broker_url)
    hl7 = Hl7Codec(
        default_registry(),
        MappingContext(tables=load_code_tables(settings.resolved_mappings_dir), timezone=settings.tz),
        processing_id=settings.hl7_processing_id,
        validate_senders=[v.strip() for v in (settings.hl7_validate_senders or "").split(",") if v.strip()],
    )
    fhir = FhirCodec(hl7.context.tables, settings.tz)
    endpoints = parse_addresses(settings.hl7_report_endpoints)
    return Services(
        settings=settings,
        store=store,
        bus=bus,
        tokens=TokenService(signing_key, settings.token_ttl_seconds),
        consultations=ConsultationService(store, bus, settings.tz, on_complete=ReportQueue(endpoints, settings.tz)),
        engine=InboundEngine(store, bus, settings.tz),
        codecs={hl7.channel: hl7, fhir.channel: fhir},
        channels={
            hl7.channel: ChannelState("inbound", "disabled" if settings.mllp_port == 0 else "stopped"),
            fhir.channel: ChannelState("inbound", "listening"),
            "dicom": ChannelState("inbound", "disabled" if settings.dicom_port == 0 else "stopped"),
            OUTBOUND: ChannelState("outbound", "stopped" if endpoints else "disabled"),
        },
        outbound=OutboundSender(store, endpoints),
        fhir=FhirWriter(store, bus, hl7.context.tables, settings.tz),
    )


def build_app(services: Services) -> Starlette:
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(_: Request) -> JSONResponse:
        try:
            await services.store.ping()
        except Exception as exc:  # any failure means "not ready"; say which part
            log.warning("readiness check failed: %s", type(exc).__name__)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ready", "database": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await services.close()

    settings = services.settings
    gql: ASGIApp = BearerAuth(
        BodyLimit(graphql_app(services), settings.graphql_max_body_bytes), services.tokens,
        allow_ide_page=settings.graphiql_enabled, defer_websocket=True,
    )
    if settings.origins:  # browsers on these origins may call the API (WebSocket origins: the GraphQL app)
        gql = CORSMiddleware(
            gql, allow_origins=settings.origins, allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["authorization", "content-type", "x-request-id"], expose_headers=["x-request-id"],
            max_age=600,
        )
    gql = RequestId(gql)
    fhir = FhirUnauthorized(BearerAuth(fhir_app(services), services.tokens))
    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/graphql", gql),
            WebSocketRoute("/graphql", gql),  # subscriptions: graphql-transport-ws and graphql-ws
            Route("/fhir", fhir),  # the FHIR base itself: transaction and batch Bundles
            Mount("/fhir", app=fhir),
        ],
        lifespan=lifespan,
    )
