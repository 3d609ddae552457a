"""what one op of a study run hands to the next, kept until the run's study is done

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_step_output",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("step_key", sa.String(length=128), nullable=False),
        sa.Column("output_name", sa.String(length=128), nullable=False),
        sa.Column("root_run_id", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "step_key", "output_name", name=op.f("pk_run_step_output")),
    )
    op.create_index(op.f("ix_run_step_output_root_run_id"), "run_step_output", ["root_run_id"])
    op.create_index(op.f("ix_run_step_output_created_at"), "run_step_output", ["created_at"])


def downgrade() -> None:
    op.drop_table("run_step_output")
