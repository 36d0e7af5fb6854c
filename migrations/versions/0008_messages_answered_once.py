"""messages: a sender + control id is answered (PROCESSED/FILTERED) once on the inbound engine's
channels (mllp, fhir), by a partial unique index

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ANSWERED = "channel IN ('mllp', 'fhir') AND status IN ('PROCESSED', 'FILTERED')"


def upgrade() -> None:
    # Before this index a reprocessed ERROR message could be applied although a resend of it had
    # been applied meanwhile: two answered rows of one sender + control id. The journal keeps
    # them as they happened; the later ones are left out of the index by id, so the upgrade of
    # such a database succeeds and every message from now on is answered once.
    later = op.get_bind().execute(sa.text(
        "SELECT m.id FROM messages m WHERE m.channel IN ('mllp', 'fhir') AND m.status IN ('PROCESSED', 'FILTERED')"
        " AND EXISTS (SELECT 1 FROM messages e WHERE e.sender = m.sender AND e.control_id = m.control_id"
        " AND e.channel IN ('mllp', 'fhir') AND e.status IN ('PROCESSED', 'FILTERED')"
        " AND (e.received_at < m.received_at OR (e.received_at = m.received_at AND e.id < m.id)))"
    )).scalars().all()
    where = _ANSWERED
    if later:
        ids = ", ".join("'" + str(i).replace("'", "''") + "'" for i in sorted(later))
        where = f"{_ANSWERED} AND id NOT IN ({ids})"
    op.create_index(
        "uq_messages_answered", "messages", ["sender", "control_id"], unique=True,
        postgresql_where=sa.text(where), sqlite_where=sa.text(where),
    )


def downgrade() -> None:
    op.drop_index("uq_messages_answered", table_name="messages")
