"""Request ids: ``X-Request-Id`` honoured or generated, echoed back, and on every log line.

:class:`RequestIdMiddleware` (pure ASGI, before any body is read) puts the id
in a context variable for the request's task; :class:`LogContext` (a logging
filter) copies it, and the control id of the message being handled, onto each
record. Code handling one message wraps itself in :func:`message_context`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
control_id: ContextVar[str | None] = ContextVar("control_id", default=None)
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # a client's id is kept only if it is harmless in a log


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == HEADER.encode()), "")
        rid = given if _ACCEPTABLE.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != HEADER.encode()]
                message = {**message, "headers": [*headers, (HEADER.encode(), rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


@contextlib.contextmanager
def message_context(control: str | None) -> Iterator[None]:
    """Log lines written inside carry ``control_id``."""
    token = control_id.set(control)
    try:
        yield
    finally:
        control_id.reset(token)


class LogContext(logging.Filter):
    """Adds ``request_id`` and ``control_id`` to a record when they are known and not already set."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("request_id", request_id), ("control_id", control_id)):
            value = var.get()
            if value is not None and getattr(record, name, None) is None:
                setattr(record, name, value)
        return True
