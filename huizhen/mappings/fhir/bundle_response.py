"""Bundles Huizhen answers with: transaction-response, batch-response, searchset.

The engine says what happened to each entry (:class:`EntryResult`); these
functions only shape it as R4 wants (one response entry per request entry, in
the same order; ``response.status`` as an HTTP status line; an
OperationOutcome in ``response.outcome`` when there is something to say).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus

from huizhen.mappings.fhir import render as r
from huizhen.mappings.fhir.outcome import Issue, operation_outcome
from huizhen.mappings.fhir.render import JSON, compact


@dataclass(frozen=True, slots=True)
class EntryResult:
    status: int  # HTTP status of this entry: 201, 200, 400, 404, 412, 422…
    location: str | None = None  # "Patient/<id>/_history/<version>"
    etag: str | None = None  # 'W/"3"'
    last_modified: datetime | None = None
    outcome: Sequence[Issue] = ()
    resource: JSON | None = None  # with Prefer: return=representation


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _entry(result: EntryResult) -> JSON:
    response = compact(
        {
            "status": status_line(result.status),
            "location": result.location,
            "etag": result.etag,
            "lastModified": r.instant(result.last_modified) if result.last_modified else None,
            "outcome": operation_outcome(result.outcome) if result.outcome else None,
        }
    )
    return compact({"resource": result.resource, "response": response})


def transaction_response(results: Sequence[EntryResult], *, id: str | None = None) -> JSON:
    return _response("transaction-response", results, id)


def batch_response(results: Sequence[EntryResult], *, id: str | None = None) -> JSON:
    return _response("batch-response", results, id)


def _response(kind: str, results: Sequence[EntryResult], id: str | None) -> JSON:
    return compact({"resourceType": "Bundle", "id": id, "type": kind, "entry": [_entry(x) for x in results]})


def searchset(
    resources: Sequence[JSON],
    *,
    base_url: str,
    self_url: str,
    next_url: str | None = None,
    previous_url: str | None = None,
    total: int | None = None,
    included: Sequence[JSON] = (),
    issues: Sequence[Issue] = (),
    id: str | None = None,
) -> JSON:
    """A page of search results; ``base_url`` is the FHIR base (``https://host/fhir``)."""
    links = [{"relation": "self", "url": self_url}]
    links += [{"relation": "next", "url": next_url}] if next_url else []
    links += [{"relation": "previous", "url": previous_url}] if previous_url else []
    entries = [_found(x, base_url, "match") for x in resources]
    entries += [_found(x, base_url, "include") for x in included]
    if issues:
        entries.append({"resource": operation_outcome(issues), "search": {"mode": "outcome"}})
    return compact(
        {"resourceType": "Bundle", "id": id, "type": "searchset", "total": total, "link": links, "entry": entries}
    )


def _found(resource: JSON, base_url: str, mode: str) -> JSON:
    full_url = f"{base_url.rstrip('/')}/{resource['resourceType']}/{resource['id']}"
    return {"fullUrl": full_url, "resource": resource, "search": {"mode": mode}}
