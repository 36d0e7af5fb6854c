"""imaging_studies: StudyID encrypted at rest (study_id_enc; modalities often put the PatientID
there), and the header's own StudyDate and StudyTime (study_date, study_time, DA/TM text as
sent) that C-FIND and QIDO-RS match and return; the plaintext study_id stays for rows indexed
before, until ``huizhen keys rotate`` moves them

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("imaging_studies", sa.Column("study_id_enc", sa.LargeBinary(), nullable=True))
    op.add_column("imaging_studies", sa.Column("study_date", sa.String(16), nullable=True))
    op.add_column("imaging_studies", sa.Column("study_time", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("imaging_studies") as batch:
        batch.drop_column("study_time")
        batch.drop_column("study_date")
        batch.drop_column("study_id_enc")
