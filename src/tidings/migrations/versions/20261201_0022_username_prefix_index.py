"""index for finding accounts by the start of their username (GET /api/v1/users?prefix=)

On PostgreSQL with ``text_pattern_ops`` (byte order, whatever the database's collation); on a
large database it can be built beforehand, ``CREATE INDEX CONCURRENTLY
ix_users_username_key_prefix ON users (username_key text_pattern_ops)``; ``IF NOT EXISTS``
then makes this a no-op.

Revision ID: 0022_username_prefix_index
Revises: 0021_outbox_trace_parent
Create Date: 2026-12-01 19:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022_username_prefix_index"
down_revision: str | None = "0021_outbox_trace_parent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_users_username_key_prefix",
        "users",
        ["username_key"],
        postgresql_ops={"username_key": "text_pattern_ops"},
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_users_username_key_prefix", table_name="users", if_exists=True)
