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
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp

from huizhen import __version__
from huizhen.adapters.case_images import CaseImages
from huizhen.adapters.dicom_export import deidentification_key
from huizhen.adapters.dicomweb import DicomWeb
from huizhen.adapters.fhir_api import FhirUnauthorized, fhir_app
from huizhen.adapters.fhir_client import Health
from huizhen.adapters.fhir_codec import FhirCodec
from huizhen.adapters.fhir_his import HisClients, load_his_servers
from huizhen.adapters.fhir_push import FhirPushQueue, FhirPushSender
from huizhen.adapters.fhir_write import FhirWriter
from huizhen.adapters.hl7_channel import Hl7Codec
from huizhen.adapters.hl7_outbound import CHANNEL as OUTBOUND
from huizhen.adapters.hl7_outbound import OutboundSender, ReportQueue
from huizhen.adapters.http_auth import BearerAuth
from huizhen.adapters.objects import ObjectStore
from huizhen.adapters.signaling import SignalingHub
from huizhen.graphql.app import graphql_app
from huizhen.graphql.http import BodyLimit
from huizhen.hub import HubBus
from huizhen.integration import migrate
from huizhen.integration.casebook import CaseArchiver, chain
from huizhen.integration.consultations import ConsultationService
from huizhen.integration.coverage import CoverageRules, load_coverage_rules
from huizhen.integration.crypto import KeyRing, load_keyring
from huizhen.integration.engine import Codec, InboundEngine
from huizhen.integration.errors import BadInput, NotFound
from huizhen.integration.events import EventBus, create_bus
from huizhen.integration.model import AuditEvent, Message
from huizhen.integration.pseudonym import Pseudonymizer, load_pseudonymizer
from huizhen.integration.sla_watch import SlaWatcher
from huizhen.integration.store import Store
from huizhen.mappings.codes import load_code_tables
from huizhen.mappings.complaint import ComplaintTables, load_complaint_tables
from huizhen.mappings.hl7v2.context import MappingContext
from huizhen.mappings.hl7v2.registry import default_registry
from huizhen.metrics import MeteredEngine, Metrics
from huizhen.ops.http import ops_routes
from huizhen.rbac.audit import FAILURE, AuditLog
from huizhen.rbac.breakglass import BreakGlassService
from huizhen.rbac.enforcer import Authorizer
from huizhen.rbac.identity import TokenService, load_or_create_signing_key
from huizhen.rbac.oidc import OidcVerifier
from huizhen.rbac.service import PolicyService
from huizhen.request_id import RequestIdMiddleware
from huizhen.settings import Settings, parse_addresses

log = logging.getLogger(__name__)


@dataclass
class ChannelState:
    """What ``channels`` reports beside the journal counts: direction, run state, queue depth."""

    direction: str
    state: str = "stopped"
    queued: int = 0
    # for channels without a journal of their own (a HIS FHIR server, signaling): what they saw last
    received: int = 0
    errors: int = 0
    last_error: str | None = None
    last_activity_at: datetime | None = None


@dataclass
class Services:
    settings: Settings
    store: Store
    bus: EventBus
    tokens: TokenService
    consultations: ConsultationService
    engine: InboundEngine
    authorizer: Authorizer
    policies: PolicyService
    audit: AuditLog
    codecs: dict[str, Codec] = field(default_factory=dict)
    channels: dict[str, ChannelState] = field(default_factory=dict)
    fhir: FhirWriter | None = None
    outbound: OutboundSender | None = None
    pseudonyms: Pseudonymizer | None = None  # exports and the teaching-case library
    complaints: ComplaintTables | None = None  # analyzeComplaint's synonym and question tables
    coverage: CoverageRules | None = None  # coverageEstimate's fee and insurance rules
    sla: SlaWatcher | None = None  # escalates overdue consultations; started with the listeners
    case_images: CaseImages | None = None  # teaching cases' de-identified image copies, after the commit
    metrics: Metrics = field(default_factory=Metrics)
    his: HisClients | None = None  # the HIS FHIR servers, by facility
    fhir_push: FhirPushSender | None = None  # completed consultations back to them
    break_glass: BreakGlassService | None = None  # clinicians' emergency access, the officers' alerts

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

    async def login_failed(self, source: str | None, path: str, reason: str) -> None:
        await self.audit.write([AuditEvent(
            at=datetime.now(UTC), actor="anonymous", action="login", outcome=FAILURE, detail=f"{path}: {reason}",
            source=source,
        )])

    async def close(self) -> None:
        await self.policies.close()
        if self.his is not None:
            await self.his.aclose()
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


def open_keyring(settings: Settings) -> KeyRing:
    """The data folder (created on first start) and its key ring: ``HUIZHEN_DATA_KEY`` or ``keys.json``."""
    data = prepare_data_dir(settings)
    return load_keyring(data, secret_value(settings.data_key), secret_value(settings.index_key))


async def open_store(settings: Settings, *, migrate_db: bool = True) -> Store:
    """The configured store, migrated: what the server and every command that touches data open."""
    keyring = open_keyring(settings)
    url = settings.resolved_database_url
    if migrate_db:
        await asyncio.to_thread(migrate.upgrade, url)
    store = Store(url, keyring, shared=settings.mllp_workers > 1 or settings.http_workers > 1)
    if migrate_db:
        try:
            if analyzed := await store.gather_statistics():
                log.info("planner statistics gathered", extra={"tables": len(analyzed)})
        except BaseException:
            await store.close()
            raise
    return store


async def create_services(
    settings: Settings, *, migrate_db: bool = True, bus: EventBus | None = None
) -> Services:
    """``bus``: the event bus to use instead of the one the settings name (a worker process's link).

    Without a broker the bus is in-process, and a hub for the worker processes if there are any
    (:mod:`huizhen.hub`); with no worker it is just the in-process bus.
    """
    store = await open_store(settings, migrate_db=migrate_db)
    data = settings.data_dir
    signing_key = load_or_create_signing_key(data)
    if bus is None:
        bus = await create_bus(settings.broker_url) if settings.broker_url else HubBus()
    hl7 = Hl7Codec(
        default_registry(),
        MappingContext(tables=load_code_tables(settings.resolved_mappings_dir), timezone=settings.tz),
        processing_id=settings.hl7_processing_id,
        validate_senders=[v.strip() for v in (settings.hl7_validate_senders or "").split(",") if v.strip()],
    )
    fhir = FhirCodec(hl7.context.tables, settings.tz)
    endpoints = parse_addresses(settings.hl7_report_endpoints)
    his_servers = load_his_servers(settings.fhir_his_servers) if settings.fhir_his_servers else {}
    channels = {
        hl7.channel: ChannelState("inbound", "disabled" if settings.mllp_port == 0 else "stopped"),
        fhir.channel: ChannelState("inbound", "listening"),
        "dicom": ChannelState("inbound", "disabled" if settings.dicom_port == 0 else "stopped"),
        OUTBOUND: ChannelState("outbound", "stopped" if endpoints else "disabled"),
        "signaling": ChannelState("both", "listening"),
        **{server.channel: ChannelState("outbound", "idle") for server in his_servers.values()},
    }
    his = HisClients(his_servers, lambda name, health: _report_health(channels[name], health))
    report_back = ReportQueue(endpoints, settings.tz)
    oidc = OidcVerifier.from_settings(settings)
    if oidc is not None:
        await asyncio.to_thread(oidc.refresh)
    pseudonyms = load_pseudonymizer(data, secret_value(settings.pseudonym_key))
    consultations = ConsultationService(
        store, bus, settings.tz,
        on_complete=chain(report_back, FhirPushQueue(his) if his_servers else None, CaseArchiver(pseudonyms.of)),
    )
    rbac = settings.resolved_rbac_dir
    authorizer = Authorizer(rbac / "model.conf")
    policies = PolicyService(store, bus, authorizer, rbac / "policy.csv")
    await policies.start()
    metrics = Metrics()
    engine = MeteredEngine(store, bus, settings.tz)
    engine.metrics, engine.log_patient_data = metrics, settings.log_patient_data
    return Services(
        settings=settings,
        store=store,
        bus=bus,
        tokens=TokenService(signing_key, settings.token_ttl_seconds, external=oidc),
        consultations=consultations,
        engine=engine,
        authorizer=authorizer,
        policies=policies,
        audit=AuditLog(store),
        codecs={hl7.channel: hl7, fhir.channel: fhir},
        channels=channels,
        outbound=OutboundSender(store, endpoints),
        fhir=FhirWriter(store, bus, hl7.context.tables, settings.tz),
        pseudonyms=pseudonyms,
        complaints=load_complaint_tables(settings.resolved_mappings_dir),
        coverage=load_coverage_rules(settings.resolved_coverage_rules_file),
        sla=SlaWatcher(store, bus, consultations, settings.sla_targets,
                       interval_s=settings.sla_check_interval_seconds),
        case_images=CaseImages(
            store, ObjectStore(data / "dicom", store.keyring), data / "teaching", deidentification_key(store.keyring)
        ),
        metrics=metrics,
        his=his,
        fhir_push=FhirPushSender(store, his),
        break_glass=BreakGlassService(store, bus, settings.break_glass_ttl_seconds),
    )


def _report_health(channel: ChannelState, health: Health) -> None:
    channel.state, channel.last_error = health.state, health.last_error
    channel.last_activity_at = datetime.now(UTC)
    if health.state == "failing":
        channel.errors += 1


def secret_value(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


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

    signaling = SignalingHub(services)  # /signaling authenticates on the socket itself (first-message token)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with signaling.running():
            yield
        await services.close()

    settings = services.settings
    gql: ASGIApp = BearerAuth(
        BodyLimit(graphql_app(services), settings.graphql_max_body_bytes), services.tokens,
        allow_ide_page=settings.graphiql_enabled, on_failure=services.login_failed, defer_websocket=True,
    )
    if settings.origins:  # browsers on these origins may call the API (WebSocket origins: the GraphQL app)
        gql = CORSMiddleware(
            gql, allow_origins=settings.origins, allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["authorization", "content-type", "x-request-id"], expose_headers=["x-request-id"],
            max_age=600,
        )
    fhir = FhirUnauthorized(BearerAuth(fhir_app(services), services.tokens, on_failure=services.login_failed))
    dicomweb = DicomWeb(
        services.store, ObjectStore(services.settings.data_dir / "dicom", services.store.keyring),
        tz=services.settings.tz, authorizer=services.authorizer,
    )
    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/graphql", gql),
            WebSocketRoute("/graphql", gql),  # subscriptions: graphql-transport-ws and graphql-ws
            Route("/fhir", fhir),  # the FHIR base itself: transaction and batch Bundles
            Mount("/fhir", app=fhir),
            *ops_routes(services),
            *signaling.routes(),
            Mount("/dicomweb", app=BearerAuth(dicomweb.app(), services.tokens, on_failure=services.login_failed)),
        ],
        middleware=[Middleware(RequestIdMiddleware)],
        lifespan=lifespan,
    )
