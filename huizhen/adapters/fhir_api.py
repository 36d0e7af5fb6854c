"""The FHIR R4 REST endpoint at ``/fhir``: HTTP in, OperationOutcome for every failure.

``FhirApi`` is a plain ASGI app served behind :class:`~.http_auth.BearerAuth`
(so no body is read before the token is checked; :class:`FhirUnauthorized`
only rewrites that middleware's 401 as an OperationOutcome). It negotiates the
format (``application/fhir+json`` or ``application/json``, ``_format``
honoured), reads bodies up to ``fhir_max_body_bytes`` (declared length and
bytes actually streamed), and dispatches: writes to :class:`.fhir_write.FhirWriter`,
reads to :mod:`.fhir_read`, searches to :mod:`.fhir_search`. Failures become
an HTTP status and an OperationOutcome in :meth:`FhirApi.__call__` only
(the table is in :mod:`.fhir_errors`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Final
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from huizhen.adapters.fhir_capability import capability_statement
from huizhen.adapters.fhir_errors import FhirHttpError, failure
from huizhen.adapters.fhir_guard import FhirAccess, FhirGuard
from huizhen.adapters.fhir_read import READABLE, read
from huizhen.adapters.fhir_request import FhirRequest
from huizhen.adapters.fhir_search import Query, search
from huizhen.adapters.fhir_write import FhirAnswer, FhirWriter
from huizhen.integration.errors import HuizhenError
from huizhen.integration.store import Store
from huizhen.mappings.fhir import jsonio
from huizhen.mappings.fhir.bundle_response import searchset
from huizhen.mappings.fhir.models import is_r4_resource_type
from huizhen.mappings.fhir.outcome import IssueType, error, operation_outcome
from huizhen.rbac.identity import Principal

if TYPE_CHECKING:
    from huizhen.app import Services

log = logging.getLogger(__name__)

PREFIX: Final = "/fhir"
FHIR_JSON: Final = "application/fhir+json"
_JSON_TYPES: Final = frozenset({FHIR_JSON, "application/json", "application/json+fhir"})
_FORMATS: Final = {"json": FHIR_JSON, FHIR_JSON: FHIR_JSON, "application/json": "application/json",
                   "application/json+fhir": FHIR_JSON}


def fhir_app(services: Services) -> FhirApi:
    if services.fhir is None:
        raise ValueError("the FHIR channel was not set up (Services.fhir)")
    settings = services.settings
    guard = FhirGuard(services.authorizer, services.store, services.audit)
    return FhirApi(services.store, services.fhir, settings.tz, settings.fhir_max_body_bytes, guard)


class FhirApi:
    def __init__(self, store: Store, writer: FhirWriter, tz: tzinfo, max_body_bytes: int, guard: FhirGuard) -> None:
        self.store, self.writer, self.tz, self.max_body_bytes = store, writer, tz, max_body_bytes
        self.guard = guard
        self.started = datetime.now(UTC)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # FHIR subscriptions over WebSocket are not offered
            await receive()
            await send({"type": "websocket.close", "code": 1003})
            return
        request = Request(scope, receive)
        media = FHIR_JSON
        access: FhirAccess | None = None
        try:
            media = _negotiate(request)
            access = self.guard.access(request, _principal(request))
            answer = await self._dispatch(request, access)
        except Exception as exc:  # one place turns every failure into an OperationOutcome
            if not isinstance(exc, HuizhenError):
                log.exception("FHIR request failed: %s %s", request.method, scope.get("path"))
            status, issues = failure(exc)
            answer = FhirAnswer(status, operation_outcome(issues))
        if access is not None:
            await self.guard.flush(access)
        await _response(answer, media, _base(request))(scope, receive, send)

    async def _dispatch(self, request: Request, access: FhirAccess) -> FhirAnswer:
        base = _base(request)
        parts = [p for p in request.url.path[len(_base_path(request)) :].split("/") if p]
        method = request.method
        if parts == ["metadata"]:
            _allow(method, "GET")
            return FhirAnswer(200, capability_statement(base, self.started, access.permits))  # what this caller may do
        if not parts:
            _allow(method, "POST")
            access.require(None, method)
            return await self._write(request, "POST", "", access)
        resource_type = parts[0]
        if not is_r4_resource_type(resource_type):
            raise FhirHttpError(404, IssueType.NOT_SUPPORTED, f"{resource_type!r} is not an R4 resource type")
        if len(parts) == 1:
            _allow(method, "GET", "POST", "PUT")
            access.require(resource_type, method)
            if method == "GET":
                return await self._search(request, resource_type, base, access)
            if method == "PUT" and not _query(request):
                raise FhirHttpError(400, IssueType.REQUIRED, "PUT needs an id or a condition (?identifier=)")
            query = f"?{_query(request)}" if method == "PUT" else ""
            return await self._write(request, method, resource_type + query, access)
        if len(parts) == 2:
            _allow(method, "GET", "PUT")
            access.require(resource_type, method)
            if method == "PUT":
                return await self._write(request, "PUT", f"{resource_type}/{parts[1]}", access)
            return await self._read(request, resource_type, parts[1], access)
        raise FhirHttpError(405 if parts[2:3] == ["_history"] else 404, IssueType.NOT_SUPPORTED,
                            f"{'/'.join(parts[2:])} is not supported", "/".join(parts))

    async def _write(self, request: Request, method: str, path: str, access: FhirAccess) -> FhirAnswer:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in _JSON_TYPES:
            raise FhirHttpError(415, IssueType.NOT_SUPPORTED, f"Content-Type must be {FHIR_JSON} or application/json")
        principal = _principal(request)
        body = await _body(request, self.max_body_bytes)
        if_none_exist = request.headers.get("if-none-exist") if method == "POST" and path else None
        received = datetime.now(UTC).isoformat() if method == "PUT" else None  # applied again, never a DUPLICATE
        submission = FhirRequest(method, path, body, principal.facility or principal.sub, principal.facility,
                                 if_none_exist, received)
        peer = f"{request.client.host}:{request.client.port}" if request.client else None
        try:
            answer = await self.writer.submit(
                submission, actor=principal.actor(peer), peer=peer, prefer=request.headers.get("prefer", "")
            )
        except Exception:
            access.wrote(method, path, 500)
            raise
        access.wrote(method, path, answer.status)
        return answer

    async def _read(self, request: Request, resource_type: str, entity_id: str, access: FhirAccess) -> FhirAnswer:
        if resource_type not in READABLE:
            raise FhirHttpError(404, IssueType.NOT_SUPPORTED, f"{resource_type} cannot be read from Huizhen")
        principal = _principal(request)
        async with self.store.read() as repo:
            found = await read(repo, resource_type, entity_id, principal.facility or principal.sub)
        if found is None or not await access.visible(found):  # hidden and unknown answer alike
            raise FhirHttpError(404, IssueType.NOT_FOUND, f"{resource_type}/{entity_id} is not known",
                                f"{resource_type}/{entity_id}")
        return FhirAnswer(200, found)

    async def _search(self, request: Request, resource_type: str, base: str, access: FhirAccess) -> FhirAnswer:
        principal = _principal(request)
        params = list(request.query_params.multi_items())
        query = Query(resource_type, params, principal.facility or principal.sub, self.tz,
                      await access.patient_rows(), await access.consultation_rows())
        async with self.store.read() as repo:
            found = await search(repo, query)  # filtered in SQL: the total and the page hold visible rows only
        visible = [r for r in found.resources if await access.visible(r)]  # audits each read resource
        if len(visible) != len(found.resources):  # the two copies of the rule disagree: never show the extra
            log.error("FHIR search %s: %d resources passed SQL visibility but not the row rule",
                      resource_type, len(found.resources) - len(visible))
            found.resources, found.total = visible, found.total - (len(found.resources) - len(visible))
        # the links name the parameters applied (FHIR R4 search: the server returns those it used),
        # so an ignored one such as Patient?birthdate= never looks applied; the next page keeps _format
        used = [(k, v) for k, v in params if k not in found.ignored]
        kept = [(k, v) for k, v in used if k != "_cursor"]
        here = f"{base}/{resource_type}"
        self_url = f"{here}?{urlencode(used)}" if used else here
        next_url = f"{here}?{urlencode([*kept, ('_cursor', found.next_cursor)])}" if found.next_cursor else None
        bundle = searchset(found.resources, base_url=base, self_url=self_url, next_url=next_url,
                           total=found.total, issues=found.issues)
        return FhirAnswer(200, bundle)


class FhirUnauthorized:
    """Wraps :class:`~.http_auth.BearerAuth` so that its 401 answer is an OperationOutcome."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = False

        async def send_outcome(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] == 401:
                refused = True
                reason = "a valid Authorization: Bearer token is required"
                body = jsonio.dumps(operation_outcome([error(IssueType.LOGIN, reason)]))
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() == b"www-authenticate"]
                headers += [(b"content-type", f"{FHIR_JSON}; charset=utf-8".encode()),
                            (b"content-length", str(len(body)).encode())]
                await send({**message, "headers": headers})
                await send({"type": "http.response.body", "body": body})
            elif not refused:
                await send(message)

        await self.app(scope, receive, send_outcome)


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise FhirHttpError(405, IssueType.NOT_SUPPORTED, f"{method} is not supported here; allowed: "
                            f"{', '.join(allowed)}")


def _negotiate(request: Request) -> str:
    wanted = request.query_params.get("_format")
    if wanted is not None:
        media = _FORMATS.get(wanted.split(";")[0].strip().lower())
        if media is None:
            raise FhirHttpError(406, IssueType.NOT_SUPPORTED, f"_format {wanted!r}: only JSON is served", "_format")
        return media
    accept = [a.split(";")[0].strip().lower() for a in request.headers.get("accept", "").split(",") if a.strip()]
    if not accept or any(a in ("*/*", "application/*", FHIR_JSON, "application/json+fhir") for a in accept):
        return FHIR_JSON
    if "application/json" in accept:
        return "application/json"
    raise FhirHttpError(406, IssueType.NOT_SUPPORTED, f"Accept {', '.join(accept)}: only JSON is served")


def _query(request: Request) -> str:
    return urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "_format"])


def _principal(request: Request) -> Principal:
    principal = request.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):  # mounted without BearerAuth: refuse rather than guess
        raise FhirHttpError(401, IssueType.LOGIN, "not authenticated")
    return principal


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise FhirHttpError(413, IssueType.TOO_COSTLY, f"the body exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise FhirHttpError(413, IssueType.TOO_COSTLY, f"the body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _base_path(request: Request) -> str:
    root: str = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    return root.rstrip("/") + PREFIX


def _base(request: Request) -> str:
    return str(request.url.replace(path=_base_path(request), query=""))


def _response(answer: FhirAnswer, media: str, base: str) -> Response:
    headers = {"location": f"{base}/{answer.location}"} if answer.location else {}
    body = jsonio.dumps(answer.body) if answer.body is not None else b""
    return Response(body, status_code=answer.status, headers=headers, media_type=f"{media}; charset=utf-8")
