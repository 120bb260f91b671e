"""notifications: an index on notification_actors(actor_id)

Revision ID: 0010_notification_actor
Revises: 0009_retention
Create Date: 2026-11-30 04:00:00

A block finds the groups that count the blocked user (``groups_with_actor``), and deleting a
user cascades to the rows that name them as an actor; without this index both scan the table.
On a large PostgreSQL database, an operator may build it beforehand with
``CREATE INDEX CONCURRENTLY`` under the same name; ``IF NOT EXISTS`` then makes this a no-op.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_notification_actor"
down_revision: str | None = "0009_retention"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_notification_actors_actor_id"


def upgrade() -> None:
    op.create_index(NAME, "notification_actors", ["actor_id"], unique=False, if_not_exists=True)


def downgrade() -> None:
    op.drop_index(NAME, table_name="notification_actors", if_exists=True)
