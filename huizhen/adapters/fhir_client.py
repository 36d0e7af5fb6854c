"""An async client for a HIS's FHIR R4 server: pull patients and results, push consultation outcomes.

    FhirClientError            base; a ``HuizhenError`` like everything the edges raise
    ├── FhirServerError        the server answered with an error status (``status``, ``outcome``)
    └── FhirUnavailable        no usable answer: connection refused, timeout, 429/5xx after every retry

Authentication is a :class:`BearerToken` (a fixed token) or :class:`SmartBackend`
(SMART Backend Services: an OAuth2 client-credentials grant with a signed JWT
client assertion; the access token is cached until shortly before it expires).
Requests are retried on 429 and 5xx (and on connection errors) with exponential
backoff, waiting at least what ``Retry-After`` asks; a POST is retried only when
the server says it did not take it (429, 503) or no connection was made. Every
outcome updates :attr:`FhirClient.health`, which the channel list reports.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
import jwt

from huizhen.integration.errors import HuizhenError
from huizhen.integration.model import Consultation
from huizhen.mappings.fhir import jsonio
from huizhen.mappings.fhir.outbound_consultation import consultation as consultation_resources
from huizhen.mappings.fhir.render import JSON

FHIR_JSON = "application/fhir+json"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_NOT_TAKEN = frozenset({429, 503})  # the server says it did not process the request


class FhirClientError(HuizhenError):
    code = "UPSTREAM"


class FhirServerError(FhirClientError):
    def __init__(self, status: int, outcome: JSON | None, url: str) -> None:
        issue = (outcome or {}).get("issue", [{}])[0] if outcome else {}
        super().__init__(f"{url}: HTTP {status} {issue.get('diagnostics', '')}".rstrip())
        self.status, self.outcome = status, outcome


class FhirUnavailable(FhirClientError):
    pass


class Auth(Protocol):
    async def header(self, http: httpx.AsyncClient) -> str: ...


@dataclass(frozen=True)
class BearerToken:
    token: str

    async def header(self, http: httpx.AsyncClient) -> str:
        return f"Bearer {self.token}"


@dataclass
class SmartBackend:
    """SMART Backend Services (client credentials with a ``private_key_jwt`` assertion)."""

    token_url: str
    client_id: str
    private_key: str  # PEM
    algorithm: str = "RS384"
    scope: str = "system/*.read system/*.write"
    key_id: str | None = None
    _token: str | None = field(default=None, repr=False)
    _expires: float = 0.0

    async def header(self, http: httpx.AsyncClient) -> str:
        if self._token is None or time.time() > self._expires - 30:
            await self._fetch(http)
        return f"Bearer {self._token}"

    async def _fetch(self, http: httpx.AsyncClient) -> None:
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.token_url, "jti": uuid.uuid4().hex,
                  "iat": now, "exp": now + 300}
        headers = {"kid": self.key_id} if self.key_id else None
        assertion = jwt.encode(claims, self.private_key, algorithm=self.algorithm, headers=headers)
        form = {
            "grant_type": "client_credentials", "scope": self.scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        }
        try:
            response = await http.post(self.token_url, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise FhirUnavailable(f"token endpoint {self.token_url}: {type(exc).__name__}") from exc
        granted = _json(response)
        if response.status_code != 200 or not isinstance(granted, dict) or "access_token" not in granted:
            why = granted.get("error_description") or granted.get("error") if isinstance(granted, dict) else None
            where = f"token endpoint {self.token_url} ({why or 'no access_token granted'})"
            raise FhirServerError(response.status_code, None, where)
        try:
            expires_in = float(granted.get("expires_in", 300))
        except (TypeError, ValueError):
            expires_in = 300.0
        self._token, self._expires = str(granted["access_token"]), time.time() + expires_in


@dataclass
class Health:
    state: str = "unknown"  # "up", "failing"
    failures: int = 0  # consecutive
    last_error: str | None = None
    last_success_at: datetime | None = None


@dataclass(frozen=True)
class Retry:
    attempts: int = 4
    base_delay: float = 0.5  # seconds; doubled each attempt
    max_delay: float = 30.0


class FhirClient:
    def __init__(
        self, base_url: str, auth: Auth, *, timeout: float = 10.0, retry: Retry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_health: Callable[[Health], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth, self.retry, self.sleep = auth, retry or Retry(), sleep
        self.on_health = on_health  # told every change of health (the channel list)
        self.health = Health()
        self.http = httpx.AsyncClient(timeout=timeout, transport=transport, headers={"Accept": FHIR_JSON})

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> FhirClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # reads

    async def read(self, resource_type: str, resource_id: str) -> JSON | None:
        """The resource, or None when the server does not have it."""
        try:
            return await self._request("GET", f"{self.base_url}/{resource_type}/{resource_id}")
        except FhirServerError as exc:
            if exc.status in (404, 410):
                return None
            raise

    async def patient(self, patient_id: str) -> JSON | None:
        return await self.read("Patient", patient_id)

    async def patients_by_identifier(self, system: str, value: str) -> list[JSON]:
        return [r async for r in self.search("Patient", {"identifier": f"{system}|{value}"})]

    async def observations(
        self, patient: str, code: str, system: str = "http://loinc.org", *, page_size: int | None = None
    ) -> list[JSON]:
        """Every page of ``Observation?patient=&code=``, following ``next`` links."""
        params = {"patient": patient, "code": f"{system}|{code}"}
        return [r async for r in self.search("Observation", params, page_size=page_size)]

    async def search(
        self, resource_type: str, params: dict[str, str], *, page_size: int | None = None
    ) -> AsyncIterator[JSON]:
        url: str | None = f"{self.base_url}/{resource_type}"
        query: dict[str, str] | None = {**params, "_count": str(page_size)} if page_size else params
        while url:
            page = await self._request("GET", url, params=query) or {}
            for entry in page.get("entry", []):
                if entry.get("search", {}).get("mode", "match") == "match" and "resource" in entry:
                    yield entry["resource"]
            url = next((link["url"] for link in page.get("link", []) if link.get("relation") == "next"), None)
            query = None  # a next link carries its own query

    # writes

    async def put(self, resource: JSON) -> JSON | None:
        url = f"{self.base_url}/{resource['resourceType']}/{resource['id']}"
        return await self._request("PUT", url, body=resource)

    async def create(self, resource: JSON) -> JSON | None:
        return await self._request("POST", f"{self.base_url}/{resource['resourceType']}", body=resource)

    async def push_consultation(self, c: Consultation, subject: str | None = None) -> list[JSON | None]:
        """The consultation's Encounter and, once COMPLETED, its DiagnosticReport, by PUT (idempotent).

        ``subject``: the HIS's own reference to the patient (``Patient/123``), when it
        does not know Huizhen's patient id.
        """
        rendered = consultation_resources(c)
        pushed = []
        for resource in (rendered.session, rendered.report):
            if resource is not None:
                if subject:
                    resource = {**resource, "subject": {"reference": subject}}
                pushed.append(await self.put(resource))
        return pushed

    # the one place requests are sent, retried and judged

    async def _request(
        self, method: str, url: str, *, params: dict[str, str] | None = None, body: JSON | None = None
    ) -> JSON | None:
        content = jsonio.dumps(body) if body is not None else None
        headers = {"Content-Type": FHIR_JSON} if content is not None else {}
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            try:
                headers["Authorization"] = await self._authorization()
                response = await self.http.request(method, url, params=params, content=content, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if last:
                    raise self._failed(FhirUnavailable(f"{url}: cannot connect ({type(exc).__name__})")) from exc
                await self.sleep(self._backoff(attempt))
                continue
            except httpx.HTTPError as exc:  # sent, no answer: only a safe method may be sent again
                if last or method == "POST":
                    raise self._failed(FhirUnavailable(f"{url}: {type(exc).__name__}")) from exc
                await self.sleep(self._backoff(attempt))
                continue
            retryable = response.status_code in (_NOT_TAKEN if method == "POST" else _RETRY_STATUS)
            wait = max(self._backoff(attempt), _retry_after(response) or 0.0)
            if retryable and not last and wait <= self.retry.max_delay:  # a longer Retry-After: give up now
                await self.sleep(wait)
                continue
            return self._judge(response, url)
        raise FhirUnavailable(f"{url}: no attempt made")  # attempts < 1

    async def _authorization(self) -> str:
        try:
            return await self.auth.header(self.http)
        except FhirClientError as exc:  # the token endpoint failed: the server cannot be used either
            raise self._failed(exc) from exc.__cause__

    def _judge(self, response: httpx.Response, url: str) -> JSON | None:
        data = _json(response)
        if response.status_code >= 400:
            error = FhirServerError(response.status_code, data, url)
            if response.status_code in _RETRY_STATUS:
                raise self._failed(FhirUnavailable(str(error))) from error
            self._ok()  # the server works; it refused this request
            raise error
        self._ok()
        return data

    def _ok(self) -> None:
        self._report(Health("up", 0, self.health.last_error, datetime.now(UTC)))

    def _failed(self, error: FhirClientError) -> FhirClientError:
        h = self.health
        self._report(Health("failing", h.failures + 1, str(error), h.last_success_at))
        return error

    def _report(self, health: Health) -> None:
        self.health = health
        if self.on_health is not None:
            self.on_health(health)

    def _backoff(self, attempt: int) -> float:
        return float(min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1)))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return jsonio.load_json(response.content)
    except HuizhenError:
        return None
