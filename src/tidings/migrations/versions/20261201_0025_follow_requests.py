"""locked accounts and follow requests

``users.locked`` (false for every account; a constant default, so no table rewrite on
PostgreSQL) and the ``follow_requests`` table.

Revision ID: 0025_follow_requests
Revises: 0024_id_nodes
Create Date: 2026-12-01 23:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tidings.core.db

revision: str = "0025_follow_requests"
down_revision: str | None = "0024_id_nodes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("locked", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
    op.create_table(
        "follow_requests",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("requester_id", sa.BigInteger(), nullable=False),
        sa.Column("target_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", tidings.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["requester_id"],
            ["users.id"],
            name=op.f("fk_follow_requests_requester_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["users.id"],
            name=op.f("fk_follow_requests_target_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_follow_requests")),
        sa.UniqueConstraint(
            "requester_id", "target_id", name="uq_follow_requests_requester_id_target_id"
        ),
    )
    op.create_index(
        "ix_follow_requests_target_id_id", "follow_requests", ["target_id", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_follow_requests_target_id_id", table_name="follow_requests")
    op.drop_table("follow_requests")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("locked")
