"""rbac_rules: the Casbin policy (p lines) and role assignments (g lines), edited live

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rbac_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ptype", sa.String(length=8), nullable=False),
        sa.Column("v0", sa.String(length=200), nullable=False),
        sa.Column("v1", sa.String(length=200), nullable=False),
        sa.Column("v2", sa.String(length=200), nullable=False),
        sa.Column("v3", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rbac_rules")),
        sa.UniqueConstraint("ptype", "v0", "v1", "v2", "v3", name="uq_rbac_rules_line"),
    )


def downgrade() -> None:
    op.drop_table("rbac_rules")
