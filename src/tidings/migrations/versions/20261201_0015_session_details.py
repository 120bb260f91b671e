"""sign-in sessions remember where they came from and when they were last used

Revision ID: 0015_session_details
Revises: 0014_mail_recovery
Create Date: 2026-12-01 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tidings.core.db

revision: str = "0015_session_details"
down_revision: str | None = "0014_mail_recovery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("auth_sessions") as batch:
        batch.add_column(sa.Column("ip", sa.String(length=45), nullable=True))
        batch.add_column(sa.Column("user_agent", sa.String(length=256), nullable=True))
        batch.add_column(
            sa.Column("last_used_at", tidings.core.db.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE auth_sessions SET last_used_at = created_at WHERE last_used_at IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("auth_sessions") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("user_agent")
        batch.drop_column("ip")
