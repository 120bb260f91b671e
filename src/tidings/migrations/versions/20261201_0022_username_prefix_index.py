"""index for finding accounts by the start of their username (GET /api/v1/users?prefix=)

On PostgreSQL with ``text_pattern_ops`` (byte order, whatever the database's collation), of the
accounts that can be found; on a large database it can be built beforehand, ``CREATE INDEX
CONCURRENTLY ix_users_username_key_prefix ON users (username_key text_pattern_ops) WHERE
suspended IS false AND deleted_at IS NULL``; ``IF NOT EXISTS`` then makes this a no-op (so
build exactly that: Alembic's check does not compare operator classes).

Revision ID: 0022_username_prefix_index
Revises: 0021_outbox_trace_parent
Create Date: 2026-12-01 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

FINDABLE = "suspended IS false AND deleted_at IS NULL"

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
        postgresql_where=sa.text(FINDABLE),
        sqlite_where=sa.text(FINDABLE),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_users_username_key_prefix", table_name="users", if_exists=True)
