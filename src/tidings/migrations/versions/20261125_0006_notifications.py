"""notifications

Revision ID: 0006_notifications
Revises: 0005_delivery
Create Date: 2026-11-25 18:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tidings.core.db

revision: str = "0006_notifications"
down_revision: str | None = "0005_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_groups",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("recipient_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("group_key", sa.String(length=96), nullable=True),
        sa.Column("post_id", sa.BigInteger(), nullable=True),
        sa.Column("comment_id", sa.BigInteger(), nullable=True),
        sa.Column("actor_count", sa.Integer(), nullable=False),
        sa.Column("latest_actor_ids", sa.JSON(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("sort_key", sa.BigInteger(), nullable=False),
        sa.Column("created_at", tidings.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_event_at", tidings.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("read_at", tidings.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["users.id"],
            name=op.f("fk_notification_groups_recipient_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_groups")),
        sa.UniqueConstraint(
            "recipient_id", "group_key", name="uq_notification_groups_recipient_id_group_key"
        ),
    )
    with op.batch_alter_table("notification_groups", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_groups_recipient_id_read_at_sort_key",
            ["recipient_id", "read_at", "sort_key"],
            unique=False,
        )
        batch_op.create_index(
            "ix_notification_groups_recipient_id_sort_key",
            ["recipient_id", "sort_key"],
            unique=False,
        )

    op.create_table(
        "notification_actors",
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("actor_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", tidings.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_notification_actors_actor_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["notification_groups.id"],
            name=op.f("fk_notification_actors_group_id_notification_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "actor_id", name=op.f("pk_notification_actors")),
    )


def downgrade() -> None:
    op.drop_table("notification_actors")
    with op.batch_alter_table("notification_groups", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_groups_recipient_id_sort_key")
        batch_op.drop_index("ix_notification_groups_recipient_id_read_at_sort_key")

    op.drop_table("notification_groups")
