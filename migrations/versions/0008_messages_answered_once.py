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
    op.create_index(
        "uq_messages_answered", "messages", ["sender", "control_id"], unique=True,
        postgresql_where=sa.text(_ANSWERED), sqlite_where=sa.text(_ANSWERED),
    )


def downgrade() -> None:
    op.drop_index("uq_messages_answered", table_name="messages")
