"""studies deleted in Orthanc: marked on the study, recorded as a version

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 11:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("study", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("study", sa.Column("deleted_by_trigger", sa.String(length=64), nullable=True))
    op.add_column("study", sa.Column("deleted_correlation_id", sa.String(length=128), nullable=True))
    op.add_column("study_version", sa.Column("deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False))


def downgrade() -> None:
    op.drop_column("study_version", "deleted")
    op.drop_column("study", "deleted_correlation_id")
    op.drop_column("study", "deleted_by_trigger")
    op.drop_column("study", "deleted_at")
