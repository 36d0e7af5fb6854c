"""Bearer authentication in front of an HTTP/WebSocket app, before any body is read.

The lesson of Mirth Connect's CVE-2023-43208: nothing from an unauthenticated
request is parsed. This middleware looks only at headers (and, for
WebSockets, the ``token`` query parameter); a request without a valid token
is answered 401 with a GraphQL-shaped error and its body is never read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from huizhen.rbac.identity import AuthenticationError, TokenService

log = logging.getLogger(__name__)

# called with (source address, path, reason) for every refused request: the audit trail's login failures
OnFailure = Callable[[str | None, str, str], Awaitable[None]]


class BearerAuth:
    def __init__(
        self, app: ASGIApp, tokens: TokenService, *, allow_ide_page: bool = False,
        on_failure: OnFailure | None = None, defer_websocket: bool = False,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.allow_ide_page = allow_ide_page
        self.on_failure = on_failure
        # GraphQL: a WebSocket without a token in the handshake authenticates in connection_init,
        # which the app behind checks before anything else runs (huizhen/graphql/app.py)
        self.defer_websocket = defer_websocket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if scope["type"] == "http" and self._ide_page(scope, headers):
            await self.app(scope, receive, send)  # the static GraphiQL page carries no data
            return
        authorization = headers.get("authorization")
        if scope["type"] == "websocket" and authorization is None:
            token = parse_qs(scope.get("query_string", b"").decode()).get("token", [""])[0]
            if not token and self.defer_websocket:
                await self.app(scope, receive, send)
                return
            authorization = f"Bearer {token}" if token else None
        try:
            principal = self.tokens.verify_header(authorization)
        except AuthenticationError as exc:
            await self._failed(scope, str(exc))
            await _reject(scope, receive, send, str(exc))
            return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        state["token"] = (authorization or "").partition(" ")[2].strip()
        await self.app(scope, receive, send)

    async def _failed(self, scope: Scope, reason: str) -> None:
        if self.on_failure is None:
            return
        client = scope.get("client")
        source = f"{client[0]}:{client[1]}" if client else None
        try:
            await self.on_failure(source, scope.get("path", ""), reason)
        except Exception:  # the 401 goes out regardless; the failure to audit is logged loudly
            log.exception("could not audit a login failure")

    def _ide_page(self, scope: Scope, headers: dict[str, str]) -> bool:
        return (
            self.allow_ide_page
            and scope["method"] == "GET"
            and "text/html" in headers.get("accept", "")
            and not scope.get("query_string")
        )


async def _reject(scope: Scope, receive: Receive, send: Send, reason: str) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        # accepted, then closed: a refused handshake would reach the client as a bare HTTP 403,
        # whereas 4401 tells it to get a token (the subprotocol echoed so that browsers take the close)
        offered = [p.strip() for p in dict(scope["headers"]).get(b"sec-websocket-protocol", b"").decode().split(",")]
        await send({"type": "websocket.accept", **({"subprotocol": offered[0]} if offered[0] else {})})
        await send({"type": "websocket.close", "code": 4401, "reason": "Unauthorized"})
        return
    body = json.dumps(
        {"data": None, "errors": [{"message": reason, "extensions": {"code": "UNAUTHENTICATED"}}]}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="huizhen"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
