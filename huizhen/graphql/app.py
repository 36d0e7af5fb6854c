"""The strawberry ASGI app; authentication happens in front of it (``BearerAuth``).

HTTP requests are authenticated by ``BearerAuth`` before their body is read.
A WebSocket may instead authenticate in its ``connection_init`` payload
(``{"Authorization": "Bearer …"}`` or ``{"token": "…"}``), as browsers cannot
set headers on a WebSocket: until then the connection can do nothing, and a
missing or bad token is refused (``graphql-transport-ws``: close 4403;
legacy ``graphql-ws``: ``connection_error``). A token in the payload wins over
one in the handshake; its expiry ends the connection's subscriptions.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import jwt
import orjson
from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UNSET, UnsetType

from huizhen.graphql.context import Context, make_loaders
from huizhen.graphql.persisted import PersistedQueries
from huizhen.graphql.schema import build_schema
from huizhen.graphql.subscriptions import EventViews
from huizhen.rbac.identity import AuthenticationError, Principal

if TYPE_CHECKING:
    from huizhen.app import Services

log = logging.getLogger(__name__)

# the codes of strawberry's HTTP refusals (README: Errors); any other status is BAD_INPUT
_HTTP_ERROR_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}

# a WebSocket before connection_init: nobody, no roles
ANONYMOUS = Principal(sub="", roles=(), facility=None)


class HuizhenGraphQL(GraphQL[Context, None]):
    def __init__(self, services: Services) -> None:
        settings = services.settings
        super().__init__(
            build_schema(
                max_depth=settings.max_query_depth,
                introspection=settings.development,
                persisted=PersistedQueries.from_file(
                    settings.persisted_queries_file, enforce=settings.persisted_queries_only
                ),
            ),
            graphql_ide="graphiql" if settings.graphiql_enabled else None,
            allow_queries_via_get=False,
            allowed_origins=settings.origins,
        )
        self.services = services
        self.event_views = EventViews(services.store)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """strawberry answers a request it cannot take (a body that is not a JSON object, variables
        that are not an object, an operationName the document lacks, a query over GET) with a
        text/plain 400 and no ``extensions.code``; here it is a GraphQL error response like any other."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as exc:
            code = _HTTP_ERROR_CODES.get(exc.status_code, "BAD_INPUT")
            body = {"data": None, "errors": [{"message": exc.reason, "extensions": {"code": code}}]}
            response = Response(orjson.dumps(body), status_code=exc.status_code, media_type="application/json")
        await response(scope, receive, send)

    def encode_json(self, data: object) -> str:
        """orjson: a work-list page is some sixty kilobytes, which the standard library's encoder
        spent a tenth of the request on. A str, not bytes: a WebSocket frame stays a text frame."""
        return orjson.dumps(data).decode()

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        state = request.scope.get("state", {})
        principal = state.get("principal")
        if principal is None and not isinstance(request, WebSocket):
            raise AuthenticationError("not authenticated")  # BearerAuth always sets it for HTTP
        client = request.client
        return Context(
            services=self.services,
            principal=principal or ANONYMOUS,
            source=f"{client.host}:{client.port}" if client else None,
            loaders=make_loaders(self.services),
            request=request,
            expires_at=_expiry(state.get("token")),
            event_views=self.event_views,
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        params = context.connection_params or {}
        token = _payload_token(params)
        if token is not None:
            try:
                context.principal = self.services.tokens.verify(token)
            except AuthenticationError as exc:
                log.info("graphql websocket refused: %s", exc)
                raise ConnectionRejectionError({"message": str(exc), "code": "UNAUTHENTICATED"}) from exc
            context.expires_at = _expiry(token)
            context._scope = None  # resolved again for the new principal
        elif context.principal is ANONYMOUS:
            raise ConnectionRejectionError(
                {"message": "connection_init must carry Authorization: Bearer <token>", "code": "UNAUTHENTICATED"}
            )
        return UNSET  # a bare connection_ack


def _payload_token(params: dict[str, Any]) -> str | None:
    header = params.get("Authorization", params.get("authorization"))
    if isinstance(header, str):
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else header
    value = params.get("token")
    return value if isinstance(value, str) else None


def _expiry(token: str | None) -> float | None:
    """``exp`` of a token whose signature was already checked."""
    if not token:
        return None
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.InvalidTokenError:
        return None
    return float(exp) if isinstance(exp, int | float) else None


def graphql_app(services: Services) -> Any:
    return HuizhenGraphQL(services)
