"""sessions left unused past their refresh tokens' lifetime are pruned: an index to find them

Revision ID: 0016_session_retention
Revises: 0015_session_details
Create Date: 2026-12-01 14:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016_session_retention"
down_revision: str | None = "0015_session_details"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # IF NOT EXISTS: on a large PostgreSQL database it can be built beforehand with
    # CREATE INDEX CONCURRENTLY (docs/operations.md)
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_auth_sessions_last_used_at ON auth_sessions (last_used_at)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_auth_sessions_last_used_at")
