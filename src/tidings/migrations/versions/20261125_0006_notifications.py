"""notifications

Revision ID: 0006_notifications
Revises: 0005_delivery
Create Date: 2026-11-25 18:15:00
"""

from collections.abc import Sequence

revision: str = "0006_notifications"
down_revision: str | None = "0005_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
