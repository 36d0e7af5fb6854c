"""The audit chain's hash: the canonical JSON the stored chain was written in, however it is built."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from huizhen.integration.model import AuditEvent
from huizhen.integration.repo.audit import chain_hash


def _reference(prev: str | None, e: AuditEvent) -> str:
    """The definition: sorted keys, ``json.dumps``' separators, UTF-8 unescaped; no ``domain`` before 0013."""
    doc = {
        "prev": prev, "id": e.id, "at": e.at.isoformat(), "actor": e.actor, "roles": e.roles,
        "action": e.action, "entity_type": e.entity_type, "entity_id": e.entity_id,
        "outcome": e.outcome, "detail": e.detail, "source": e.source,
    }
    if e.domain is not None:
        doc["domain"] = e.domain
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


AWKWARD = ['', 'plain', 'quote " and \\ backslash', 'tab\tnew\nline\r', 'ctl \x00\x01\x1f\x7f', 'sep \u2028\u2029',
           '中文 名字', 'emoji \U0001f600', 'slash / <script>']


@pytest.mark.parametrize("text", AWKWARD)
@pytest.mark.parametrize("domain", [None, "*", "fac-1"])
def test_same_hash_as_the_canonical_json(text: str, domain: str | None) -> None:
    for roles in ([], ["coordinator"], [text, "expert"]):
        for optional in (None, text):
            e = AuditEvent(at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), actor=text, action="read",
                           outcome="success", roles=roles, entity_type=optional, entity_id=optional, detail=optional,
                           source=optional, domain=domain)
            for prev in (None, "ab" * 32):
                assert chain_hash(prev, e) == _reference(prev, e)


def test_other_values_and_zones_keep_their_json() -> None:
    at = datetime(2020, 5, 6, 7, 8, tzinfo=timezone(timedelta(hours=8)))
    odd = AuditEvent(at=at, actor="a", action="read", outcome="success", roles=[1, None], detail=5)  # type: ignore[list-item, arg-type]
    assert chain_hash(None, odd) == _reference(None, odd)
    tupled = AuditEvent(at=at, actor="a", action="read", outcome="success", roles=("x", "y"))  # type: ignore[arg-type]
    assert chain_hash("p", tupled) == _reference("p", tupled)


def test_a_lone_surrogate_is_refused_as_before() -> None:
    e = AuditEvent(at=datetime.now(UTC), actor="\ud800", action="read", outcome="success")
    with pytest.raises(UnicodeEncodeError):
        _reference(None, e)
    with pytest.raises(UnicodeEncodeError):
        chain_hash(None, e)
