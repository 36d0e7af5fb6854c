"""Operations over HTTP: ``/metrics`` (Prometheus), ``/admin/mappings/reload``, the ``/dashboard`` pages.

``/metrics`` authentication: with the ``metrics_token`` setting, a scraper
sends ``Authorization: Bearer <metrics_token>`` (Prometheus ``authorization``
in its scrape config); without it, a Huizhen token with the
``integration_admin`` role is needed. Either way nothing is answered to an
anonymous request, and no label carries patient data.

The dashboard is static (HTML, ES modules, CSS): it holds no data and asks the
GraphQL API with the token the user pastes, so it is served without a token.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from huizhen.metrics import CONTENT_TYPE
from huizhen.ops import mappings
from huizhen.rbac.identity import AuthenticationError

if TYPE_CHECKING:
    from huizhen.app import Services

log = logging.getLogger(__name__)
ADMIN_ROLE = "integration_admin"
DASHBOARD_DIR = Path(__file__).parent / "dashboard"
_PAGE_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def _denied(status: int, reason: str) -> JSONResponse:
    headers = {"www-authenticate": 'Bearer realm="huizhen"'} if status == 401 else None
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


def _admin(services: Services, request: Request) -> JSONResponse | None:
    """``None`` when the request carries an integration_admin token, else the refusal."""
    try:
        principal = services.tokens.verify_header(request.headers.get("authorization"))
    except AuthenticationError as exc:
        return _denied(401, str(exc))
    if ADMIN_ROLE not in principal.roles:
        return _denied(403, f"the {ADMIN_ROLE} role is needed")
    return None


def _scraper(services: Services, request: Request) -> JSONResponse | None:
    expected = services.settings.metrics_token
    if expected is None:
        return _admin(services, request)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode()):
        return None
    return _denied(401, "metrics need Authorization: Bearer <metrics_token>")


class _PageHeaders:
    """Security headers on every dashboard file: only our own scripts and styles run."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_PAGE_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_headers)


def ops_routes(services: Services) -> list[BaseRoute]:
    async def metrics(request: Request) -> Response:
        refused = _scraper(services, request)
        if refused is not None:
            return refused
        if services.metrics.gather is not None:  # worker processes: the sum over all of them
            return Response(await services.metrics.gather(), media_type=CONTENT_TYPE)
        await services.metrics.refresh(services.store, services.channels)
        return Response(services.metrics.exposition(), media_type=CONTENT_TYPE)

    async def reload_mappings(request: Request) -> Response:
        refused = _admin(services, request)
        if refused is not None:
            return refused
        result = mappings.reload(services)
        if result.ok:
            await mappings.announce(services)
        return JSONResponse({"reloaded": result.ok, "detail": result.detail}, status_code=200 if result.ok else 422)

    return [
        Route("/metrics", metrics),
        Route("/admin/mappings/reload", reload_mappings, methods=["POST"]),
        Mount("/dashboard", app=_PageHeaders(StaticFiles(directory=DASHBOARD_DIR, html=True)), name="dashboard"),
    ]
