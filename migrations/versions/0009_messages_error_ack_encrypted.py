"""messages: the error and the ACK are encrypted at rest (error_enc, ack_enc); the plaintext
columns stay for rows journaled before, until ``huizhen keys rotate`` moves them

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("error_enc", sa.LargeBinary(), nullable=True))
    op.add_column("messages", sa.Column("ack_enc", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("ack_enc")
        batch.drop_column("error_enc")
