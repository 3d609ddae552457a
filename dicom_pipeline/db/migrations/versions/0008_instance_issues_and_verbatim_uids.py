"""instances keep what does not conform: an issues list, and UIDs of any length as found

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# varchar(64) -> text is binary compatible in PostgreSQL: no table rewrite, indexes kept.
UID_COLUMNS = [
    ("study", "study_instance_uid"),
    ("series", "series_instance_uid"),
    ("instance", "sop_instance_uid"),
    ("instance", "sop_class_uid"),
    ("instance", "transfer_syntax_uid"),
    ("outbox", "study_instance_uid"),
    ("dead_letter", "study_instance_uid"),
    ("ingestion_request", "study_instance_uid"),
    ("orthanc_study_seen", "study_instance_uid"),
]


def upgrade() -> None:
    for table, column in UID_COLUMNS:
        op.alter_column(table, column, type_=sa.Text(), existing_type=sa.String(length=64))
    op.add_column(
        "instance",
        sa.Column("issues", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("instance", "issues")
    for table, column in UID_COLUMNS:
        op.alter_column(table, column, type_=sa.String(length=64), existing_type=sa.Text())
