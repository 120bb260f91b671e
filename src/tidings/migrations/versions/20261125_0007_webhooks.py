"""webhook subscriptions and deliveries

Revision ID: 0007_webhooks
Revises: 0006_notifications
Create Date: 2026-11-25 18:15:00
"""

from collections.abc import Sequence

revision: str = "0007_webhooks"
down_revision: str | None = "0006_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
