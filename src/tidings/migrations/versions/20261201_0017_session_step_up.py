"""an account without a password confirms it is its holder through its sign-in provider: when,
per session

Revision ID: 0017_session_step_up
Revises: 0016_session_retention
Create Date: 2026-12-01 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tidings.core.db

revision: str = "0017_session_step_up"
down_revision: str | None = "0016_session_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_authorizations") as batch:
        batch.add_column(sa.Column("result_hash", sa.String(length=64), nullable=True))
        batch.create_unique_constraint(op.f("uq_oauth_authorizations_result_hash"), ["result_hash"])
    with op.batch_alter_table("auth_sessions") as batch:
        batch.add_column(
            sa.Column(
                "reauthenticated_at", tidings.core.db.UTCDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("auth_sessions") as batch:
        batch.drop_column("reauthenticated_at")
    with op.batch_alter_table("oauth_authorizations") as batch:
        batch.drop_constraint(op.f("uq_oauth_authorizations_result_hash"), type_="unique")
        batch.drop_column("result_hash")
