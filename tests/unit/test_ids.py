"""Ids: random (version 4) for entities, time-ordered (version 7) for the audit trail's rows."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from huizhen.integration.model import AuditEvent, new_id, new_time_ordered_id


def test_entity_ids_are_random_uuids() -> None:
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(uuid.UUID(i).version == 4 and uuid.UUID(i).hex == i for i in ids)


def test_audit_event_ids_are_version_7_in_time_order() -> None:
    earlier = new_time_ordered_id()
    time.sleep(0.002)
    event = AuditEvent(at=datetime.now(UTC), actor="u", action="read", outcome="success")
    for i in (earlier, event.id):
        u = uuid.UUID(i)
        assert u.version == 7 and u.variant == uuid.RFC_4122 and u.hex == i
    assert earlier < event.id  # a later millisecond sorts after
    assert abs(int(event.id[:12], 16) - time.time_ns() // 1_000_000) < 60_000
    assert len({new_time_ordered_id() for _ in range(1000)}) == 1000
