"""The strawberry ASGI app; authentication happens in front of it (``BearerAuth``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from huizhen.graphql.context import Context, make_loaders
from huizhen.graphql.schema import build_schema
from huizhen.rbac.identity import AuthenticationError

if TYPE_CHECKING:
    from huizhen.app import Services


class HuizhenGraphQL(GraphQL[Context, None]):
    def __init__(self, services: Services) -> None:
        settings = services.settings
        super().__init__(
            build_schema(max_depth=settings.max_query_depth),
            graphql_ide="graphiql" if settings.graphiql_enabled else None,
            allow_queries_via_get=False,
        )
        self.services = services

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        principal = request.scope.get("state", {}).get("principal")
        if principal is None:  # BearerAuth always sets it; refuse rather than run unauthenticated
            raise AuthenticationError("not authenticated")
        client = request.client
        return Context(
            services=self.services,
            principal=principal,
            source=f"{client.host}:{client.port}" if client else None,
            loaders=make_loaders(self.services),
            request=request,
        )


def graphql_app(services: Services) -> Any:
    return HuizhenGraphQL(services)
