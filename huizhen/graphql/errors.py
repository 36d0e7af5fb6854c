"""Every GraphQL error carries ``extensions.code``; unexpected ones are masked.

Domain errors (:class:`HuizhenError`) keep their message and code. GraphQL
syntax/validation errors become ``GRAPHQL_VALIDATION_FAILED``. Anything else
is logged with the request id and shown as ``INTERNAL`` without details.
"""

from __future__ import annotations

import logging
import uuid

from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors

from huizhen.integration.errors import HuizhenError
from huizhen.request_id import request_id

log = logging.getLogger(__name__)


class Forbidden(HuizhenError):
    code = "FORBIDDEN"


class ErrorCodes(MaskErrors):
    def __init__(self) -> None:
        super().__init__(error_message="Internal server error")

    def _process_result(self, result: object) -> None:
        """MaskErrors' own test, ``isinstance`` against a runtime-checkable protocol, asks
        ``typing`` to walk the protocol's members for every result (every subscription event of
        every subscriber); an attribute read answers the same."""
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [self._coded(e) for e in errors]

    def _coded(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, HuizhenError):
            code, message = original.code, str(original)
        elif original is None:
            code, message = (error.extensions or {}).get("code", "GRAPHQL_VALIDATION_FAILED"), error.message
        else:
            incident = request_id.get() or uuid.uuid4().hex[:12]
            log.error("unexpected error in GraphQL resolver (request %s)", incident, exc_info=original)
            code, message = "INTERNAL", f"Internal server error (request {incident})"
        return GraphQLError(
            message=message, nodes=error.nodes, source=error.source, positions=error.positions,
            path=error.path, original_error=None, extensions={**(error.extensions or {}), "code": code},
        )
