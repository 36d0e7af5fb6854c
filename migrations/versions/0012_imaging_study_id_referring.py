"""imaging_studies: StudyID and ReferringPhysicianName, so C-FIND and QIDO-RS return (and
match) them as the study level's required and default keys

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("imaging_studies", sa.Column("study_id", sa.String(64), nullable=True))
    op.add_column("imaging_studies", sa.Column("referring_physician", sa.String(400), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("imaging_studies") as batch:
        batch.drop_column("referring_physician")
        batch.drop_column("study_id")
