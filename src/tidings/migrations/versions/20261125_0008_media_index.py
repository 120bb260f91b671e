"""posts: partial index for media timelines; shares carry their post's has_media

Revision ID: 0008_media_index
Revises: 0007_webhooks
Create Date: 2026-11-25 18:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_media_index"
down_revision: str | None = "0007_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Backfill: a share's has_media mirrors the post it shares (media are never edited).
    op.execute(
        "UPDATE posts SET has_media = (SELECT p.has_media FROM posts p "
        "WHERE p.id = posts.share_of_id) WHERE kind = 'share' AND share_of_id IS NOT NULL"
    )
    with op.batch_alter_table("posts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_posts_author_id_id_media",
            ["author_id", "id"],
            unique=False,
            postgresql_where=sa.text("has_media"),
            sqlite_where=sa.text("has_media"),
        )


def downgrade() -> None:
    with op.batch_alter_table("posts", schema=None) as batch_op:
        batch_op.drop_index("ix_posts_author_id_id_media")
