"""The CLI's side of a running server: ``huizhen status`` and ``huizhen mappings reload`` over HTTP.

The token is ``--token``, else ``HUIZHEN_TOKEN``, else (on the server's own
machine) a one-minute ``integration_admin`` token signed with the data
folder's key — whoever can read that key is an admin of this server already.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

from huizhen.settings import Settings

STATUS_QUERY = """{
  channels { name direction state received errors queued lastError lastMessageAt }
  messages(status: ERROR, first: 5) { totalCount edges { node { receivedAt channel type controlId error } } }
}"""


class RemoteError(Exception):
    pass


def server_url(settings: Settings, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    scheme = "https" if settings.tls_cert_file else "http"
    return f"{scheme}://{settings.host}:{settings.http_port}"


def admin_token(settings: Settings, token: str | None) -> str:
    given = token or os.environ.get("HUIZHEN_TOKEN")
    if given:
        return given
    from huizhen.rbac.identity import TokenService, load_or_create_signing_key

    if not settings.data_dir.exists():
        raise RemoteError("no token: pass --token or set HUIZHEN_TOKEN (no local data folder to sign one with)")
    key = load_or_create_signing_key(settings.data_dir)
    return TokenService(key, 60).issue("huizhen-cli", ["integration_admin"], "*", 60)


def _client(base: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@dataclass
class Status:
    channels: list[dict[str, Any]]
    errors_total: int
    last_errors: list[dict[str, Any]]


def fetch_status(base: str, token: str) -> Status:
    try:
        with _client(base, token) as http:
            r = http.post("/graphql", json={"query": STATUS_QUERY})
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach {base}: {exc}") from exc
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    if body.get("errors") or r.status_code != 200:
        errors = body.get("errors") or [{"message": f"HTTP {r.status_code}"}]
        raise RemoteError("; ".join(str(e.get("message")) for e in errors))
    data = body["data"]
    return Status(
        channels=data["channels"], errors_total=data["messages"]["totalCount"],
        last_errors=[e["node"] for e in data["messages"]["edges"]],
    )


def request_reload(base: str, token: str) -> tuple[bool, str]:
    try:
        with _client(base, token) as http:
            r = http.post("/admin/mappings/reload")
    except httpx.HTTPError as exc:
        raise RemoteError(f"cannot reach {base}: {exc}") from exc
    if r.status_code in (401, 403):
        raise RemoteError(r.json().get("error", f"HTTP {r.status_code}"))
    body = r.json()
    return bool(body.get("reloaded")), str(body.get("detail"))
