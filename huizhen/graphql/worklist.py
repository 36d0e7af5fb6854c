"""Work-list arguments of ``consultations``: sort order, facility code, date range."""

from __future__ import annotations

import enum
from datetime import datetime

import strawberry

from huizhen.integration.errors import BadInput, NotFound
from huizhen.integration.repo import Repository


@strawberry.enum
class ConsultationSort(enum.Enum):
    NEWEST = "NEWEST"
    MOST_URGENT = "MOST_URGENT"  # CRITICAL, URGENT, ROUTINE; newest first within each


def parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadInput(f"{name} must be an ISO 8601 time, got {value!r}") from exc
    if at.tzinfo is None:
        raise BadInput(f"{name} must carry a UTC offset, got {value!r}")
    return at


async def facility_id(repo: Repository, code: str | None) -> str | None:
    if code is None:
        return None
    found = await repo.directory.facility_by_code(code)
    if found is None:
        raise NotFound("Facility", code)
    return found.id
