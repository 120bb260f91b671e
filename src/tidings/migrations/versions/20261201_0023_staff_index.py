"""index of staff accounts (moderators and admins), told of every new report

A partial index of a handful of rows: the notifications consumer finds the staff without
reading every user. ``IF NOT EXISTS``: on a large database it can be built beforehand with
``CREATE INDEX CONCURRENTLY ix_users_staff ON users (id) WHERE role <> 'user'``.

Revision ID: 0023_staff_index
Revises: 0022_username_prefix_index
Create Date: 2026-12-01 22:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

STAFF = "role <> 'user'"

revision: str = "0023_staff_index"
down_revision: str | None = "0022_username_prefix_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_users_staff",
        "users",
        ["id"],
        postgresql_where=sa.text(STAFF),
        sqlite_where=sa.text(STAFF),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_users_staff", table_name="users", if_exists=True)
