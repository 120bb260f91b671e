"""retention: indexes that keep each bounded delete of `tidings prune` an index range scan

Revision ID: 0009_retention
Revises: 0008_media_index
Create Date: 2026-11-29 22:00:00

On a large PostgreSQL database, an operator may build these beforehand with
``CREATE INDEX CONCURRENTLY`` under the same names; ``IF NOT EXISTS`` then makes this a no-op.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_retention"
down_revision: str | None = "0008_media_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES: tuple[tuple[str, str, list[str]], ...] = (
    ("ix_processed_events_processed_at", "processed_events", ["processed_at"]),
    ("ix_dead_letters_replayed_at", "dead_letters", ["replayed_at"]),
    (
        "ix_webhook_deliveries_status_last_attempt_at",
        "webhook_deliveries",
        ["status", "last_attempt_at"],
    ),
    ("ix_refresh_tokens_expires_at", "refresh_tokens", ["expires_at"]),
    ("ix_auth_sessions_revoked_at", "auth_sessions", ["revoked_at"]),
    ("ix_notification_groups_read_at", "notification_groups", ["read_at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False, if_not_exists=True)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table, if_exists=True)
