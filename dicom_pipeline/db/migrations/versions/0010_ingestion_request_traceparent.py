"""the W3C traceparent of a webhook request's trace, carried into its run's tags

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 03:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ingestion_request", sa.Column("traceparent", sa.String(length=55), nullable=True))


def downgrade() -> None:
    op.drop_column("ingestion_request", "traceparent")
