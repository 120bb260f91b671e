"""reports: users flag posts, comments and accounts for moderators

Revision ID: 0012_reports
Revises: 0011_fk_indexes
Create Date: 2026-12-01 05:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tidings.core.db

revision: str = "0012_reports"
down_revision: str | None = "0011_fk_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_ONLY = sa.text("status = 'open'")


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("reporter_id", sa.BigInteger(), nullable=False),
        sa.Column("target_type", sa.String(length=16), nullable=False),
        sa.Column("target_id", sa.BigInteger(), nullable=False),
        sa.Column("target_owner_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("note", sa.String(length=1000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", tidings.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", tidings.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_by_id", sa.BigInteger(), nullable=True),
        sa.Column("resolution_note", sa.String(length=1000), nullable=False),
        sa.ForeignKeyConstraint(
            ["reporter_id"],
            ["users.id"],
            name=op.f("fk_reports_reporter_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_owner_id"],
            ["users.id"],
            name=op.f("fk_reports_target_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by_id"],
            ["users.id"],
            name=op.f("fk_reports_resolved_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index("ix_reports_status_id", ["status", "id"], unique=False)
        batch_op.create_index("ix_reports_target", ["target_type", "target_id"], unique=False)
        batch_op.create_index(
            "uq_reports_open_per_reporter",
            ["reporter_id", "target_type", "target_id"],
            unique=True,
            postgresql_where=OPEN_ONLY,
            sqlite_where=OPEN_ONLY,
        )
        batch_op.create_index(batch_op.f("ix_reports_reporter_id"), ["reporter_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_reports_target_owner_id"), ["target_owner_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_reports_resolved_by_id"), ["resolved_by_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("reports")
