"""ingestion requests remember the Orthanc state they announced, and which request covers them

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ingestion_request", sa.Column("orthanc_last_update", sa.String(length=32), nullable=True))
    op.add_column("ingestion_request", sa.Column("duplicate_of", postgresql.UUID(as_uuid=True), nullable=True))
    op.create_foreign_key(
        op.f("fk_ingestion_request_duplicate_of_ingestion_request"),
        "ingestion_request",
        "ingestion_request",
        ["duplicate_of"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("fk_ingestion_request_duplicate_of_ingestion_request"), "ingestion_request", type_="foreignkey"
    )
    op.drop_column("ingestion_request", "duplicate_of")
    op.drop_column("ingestion_request", "orthanc_last_update")
