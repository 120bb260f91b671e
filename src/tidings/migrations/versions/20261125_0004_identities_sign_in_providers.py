"""sign-in providers: linked identities and one-time login codes

Revision ID: 0004_identities
Revises: 0003_audit
Create Date: 2026-11-25 18:10:00
"""

from collections.abc import Sequence

revision: str = "0004_identities"
down_revision: str | None = "0003_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
