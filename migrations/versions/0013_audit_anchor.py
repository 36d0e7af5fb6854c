"""audit_anchor: the end of the audit chain (event count, last hash, an HMAC under the
blind-index key), so that deleting the newest events is found by ``huizhen audit verify``.
The row written here is unsigned (the migration holds no key); the next audit event signs it.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_anchor",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("head", sa.String(64), nullable=True),
        sa.Column("mac", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_anchor")),
    )
    op.execute(
        "INSERT INTO audit_anchor (id, events, head) SELECT 1, count(*),"
        " (SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1) FROM audit_events"
    )


def downgrade() -> None:
    op.drop_table("audit_anchor")
