"""teaching cases and SLA escalations

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "teaching_cases",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("department", sa.String(length=100), nullable=False),
        sa.Column("diagnosis_code", sa.String(length=32), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("body_enc", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"],
                                name=op.f("fk_teaching_cases_consultation_id_consultations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teaching_cases")),
        sa.UniqueConstraint("consultation_id", name=op.f("uq_teaching_cases_consultation_id")),
    )
    op.create_index(op.f("ix_teaching_cases_pseudonym"), "teaching_cases", ["pseudonym"], unique=False)
    op.create_index("ix_teaching_cases_dept_code", "teaching_cases", ["department", "diagnosis_code"], unique=False)
    op.create_index("ix_teaching_cases_completed", "teaching_cases", ["completed_at", "id"], unique=False)
    op.create_table(
        "sla_escalations",
        sa.Column("consultation_id", sa.String(length=32), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"], ondelete="CASCADE",
                                name=op.f("fk_sla_escalations_consultation_id_consultations")),
        sa.PrimaryKeyConstraint("consultation_id", "phase", name=op.f("pk_sla_escalations")),
    )


def downgrade() -> None:
    op.drop_table("sla_escalations")
    op.drop_index("ix_teaching_cases_completed", table_name="teaching_cases")
    op.drop_index("ix_teaching_cases_dept_code", table_name="teaching_cases")
    op.drop_index(op.f("ix_teaching_cases_pseudonym"), table_name="teaching_cases")
    op.drop_table("teaching_cases")
