"""outbox: the other system's answer (ack) and the last error are encrypted at rest
(ack_enc, last_error_enc); the plaintext columns stay for older rows, until ``huizhen keys
rotate`` moves them

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("last_error_enc", sa.LargeBinary(), nullable=True))
    op.add_column("outbox", sa.Column("ack_enc", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("ack_enc")
        batch.drop_column("last_error_enc")
