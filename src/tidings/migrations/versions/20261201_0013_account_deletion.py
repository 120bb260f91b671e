"""account deletion: users.deleted_at and erased_at track an account's erasure

Revision ID: 0013_account_deletion
Revises: 0012_reports
Create Date: 2026-12-01 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tidings.core.db

revision: str = "0013_account_deletion"
down_revision: str | None = "0012_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("deleted_at IS NOT NULL AND erased_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("deleted_at", tidings.core.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(
            sa.Column("erased_at", tidings.core.db.UTCDateTime(timezone=True), nullable=True)
        )
    op.create_index(
        "ix_users_erasure_pending",
        "users",
        ["deleted_at"],
        unique=False,
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_users_erasure_pending", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("erased_at")
        batch.drop_column("deleted_at")
