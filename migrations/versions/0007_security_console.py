"""security console: the RBAC domain on audit events, break-glass grants

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("domain", sa.String(length=64), nullable=True))
    op.create_table(
        "break_glass",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("domain", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_break_glass_patient_id_patients"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_break_glass")),
    )
    op.create_index("ix_break_glass_user_expires", "break_glass", ["user_id", "expires_at"])
    op.create_index("ix_break_glass_granted", "break_glass", ["granted_at"])


def downgrade() -> None:
    op.drop_index("ix_break_glass_granted", table_name="break_glass")
    op.drop_index("ix_break_glass_user_expires", table_name="break_glass")
    op.drop_table("break_glass")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("domain")
