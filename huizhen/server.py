"""``huizhen serve``: one asyncio process running every enabled listener (and its worker processes)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from huizhen.adapters.balance import Balancer
from huizhen.adapters.dicom import DicomListener
from huizhen.adapters.hl7_channel import MllpInbound
from huizhen.adapters.http_adopt import AdoptingServer
from huizhen.adapters.mllp import MllpServer
from huizhen.adapters.mllp_peers import mllp_handler
from huizhen.adapters.mllp_tls import server_ssl_context
from huizhen.app import Services, build_app, create_services
from huizhen.ops.mappings import watcher as mappings_watcher
from huizhen.settings import Settings
from huizhen.workers import Workers, roles

log = logging.getLogger(__name__)


def tls_context(settings: Settings, *, require_client_cert: bool = False) -> ssl.SSLContext | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    ca = str(settings.tls_client_ca_file) if settings.tls_client_ca_file else None
    return server_ssl_context(
        str(settings.tls_cert_file), str(settings.tls_key_file), ca, require_client_cert=require_client_cert
    )


def http_tls(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS options from the same certificate settings as MLLP and DICOM (none: plain HTTP)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return {}
    tls_context(settings)  # a bad certificate or key is a ConfigurationError before uvicorn starts
    options: dict[str, Any] = {"ssl_certfile": str(settings.tls_cert_file), "ssl_keyfile": str(settings.tls_key_file)}
    if settings.tls_client_ca_file is not None:
        options.update(ssl_ca_certs=str(settings.tls_client_ca_file), ssl_cert_reqs=ssl.CERT_OPTIONAL)
    return options


def http_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration of the HTTP app, in the server and in its worker processes."""
    return uvicorn.Config(
        app, log_config=None, lifespan="on", proxy_headers=False, server_header=False,
        **http_tls(settings), **options,
    )


def mllp_server(services: Services) -> MllpServer:
    """The MLLP listener of the settings, feeding the inbound engine."""
    settings = services.settings
    return MllpServer(
        mllp_handler(MllpInbound(services.engine, services.codecs["mllp"]), settings),
        settings.host, settings.mllp_port,
        max_frame_bytes=settings.mllp_max_frame_bytes, idle_timeout_s=settings.mllp_idle_timeout_seconds,
        stall_timeout_s=settings.mllp_stall_timeout_seconds,
        max_connections=settings.mllp_max_connections,
        ssl_context=tls_context(settings, require_client_cert=settings.mllp_require_client_cert),
    )


@contextlib.asynccontextmanager
async def listeners(services: Services, *, http: Balancer | None = None) -> AsyncIterator[dict[str, int]]:
    """Start the non-HTTP listeners (MLLP…) and the worker processes; yields the ports they bound.

    ``http``: with HTTP workers, this process's HTTP listener, which hands them connections.
    """
    settings = services.settings
    ports: dict[str, int] = {}
    balancer: Balancer | None = None
    async with contextlib.AsyncExitStack() as stack:
        if settings.mllp_port:
            mllp = mllp_server(services)
            # with worker processes this one listens and hands each connection on (huizhen.adapters.balance)
            await mllp.start(listen=settings.mllp_workers == 1)
            services.metrics.watch_mllp(mllp)
            stack.push_async_callback(mllp.stop)
            ports["mllp"] = mllp.port
            if settings.mllp_workers > 1:
                balancer = Balancer(mllp, settings.host, settings.mllp_port)
                await balancer.start()
                stack.push_async_callback(balancer.stop)  # stops accepting before the connections end
                ports["mllp"] = balancer.port
            services.channels["mllp"].state = "listening"
            log.info("MLLP listener started", extra={"port": mllp.port, "tls": settings.tls_cert_file is not None})
        # the children see what this process resolved: the bound ports, the folders
        child = settings.model_copy(update={
            "mllp_port": ports.get("mllp", 0), "http_port": http.port if http is not None else 0,
            "data_dir": settings.data_dir.resolve(), "mappings_dir": settings.resolved_mappings_dir.resolve(),
            "rbac_dir": settings.resolved_rbac_dir.resolve(),
            "coverage_rules_file": settings.resolved_coverage_rules_file.resolve(),
        })
        if roles(child):
            pool = Workers(child, services, balancer, http)
            await pool.start()
            stack.push_async_callback(pool.stop)
        if settings.dicom_port:
            dicom = DicomListener(settings, services.store, services.bus, ssl_context=tls_context(settings),
                                  authorizer=services.authorizer)
            await dicom.start()
            services.metrics.watch_dicom(dicom)
            stack.push_async_callback(dicom.stop)
            services.channels["dicom"].state = "listening"
            ports["dicom"] = dicom.port
            log.info("DICOM listener started", extra={"port": dicom.port, "ae": settings.dicom_ae})
        if services.sla is not None:
            services.sla.start()
            stack.push_async_callback(services.sla.stop)
        if services.case_images is not None:
            await services.case_images.start()
            stack.push_async_callback(services.case_images.stop)
        outbound = services.outbound
        if outbound is not None and outbound.endpoints:
            await outbound.start()
            stack.push_async_callback(outbound.stop)
            services.channels["mllp-out"].state = "running"
        await stack.enter_async_context(mappings_watcher(services))
        if services.fhir_push is not None and services.fhir_push.channels:  # HIS FHIR servers configured
            await services.fhir_push.start()
            stack.push_async_callback(services.fhir_push.stop)
        yield ports
        for state in services.channels.values():
            if state.state in ("listening", "running"):
                state.state = "stopped"


async def run(settings: Settings) -> None:
    services = await create_services(settings)
    log.info(
        "huizhen starting",
        extra={"env": settings.env.value, "database": services.store.dialect,
               "broker": "redis" if settings.broker_url else "in-process", "http_port": settings.http_port},
    )
    app = build_app(services) if settings.http_port else None
    server: uvicorn.Server | None = None
    balancer: Balancer | None = None
    if app is not None:
        config = http_config(app, settings, host=settings.host, port=settings.http_port)
        if settings.http_workers > 1:  # this process listens and hands each connection on, itself included
            adopting = AdoptingServer(config)
            balancer = Balancer(adopting, settings.host, settings.http_port, name="HTTP")
            balancer.listen()  # bound before the workers start: they are told the port
            adopting.on_started, adopting.on_stopping = balancer.start, balancer.stop
            server = adopting
        else:
            server = uvicorn.Server(config)
    async with listeners(services, http=balancer):
        # start-up objects (schema, tables, mappings) live forever: keep them out of the
        # collector's full passes, which otherwise pause every listener for ~100 ms. The app is
        # built first, so that its GraphQL schema, a large share of them, is frozen too
        gc.freeze()
        # and collect the young generation every 50,000 allocations rather than every 700: an
        # HL7 message allocates thousands of short-lived objects, and the default made the
        # collector a tenth of the ingest's CPU (measured with bench/hl7_ingest.py)
        gc.set_threshold(50_000, 20, 100)
        if server is None:
            log.info("HTTP listener disabled (http_port = 0)")
            try:
                await asyncio.Event().wait()
            finally:
                await services.close()
            return
        try:
            await server.serve(sockets=[] if balancer is not None else None)
        finally:
            if balancer is not None:
                await balancer.stop()
