"""id_nodes: the node part of generated ids, leased per process (tidings.core.nodes)

One row per node id, 0..1023, free (leased until the epoch) when made.

Revision ID: 0024_id_nodes
Revises: 0023_staff_index
Create Date: 2026-12-01 23:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import tidings.core.db

revision: str = "0024_id_nodes"
down_revision: str | None = "0023_staff_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NODES = 1024


def upgrade() -> None:
    table = op.create_table(
        "id_nodes",
        sa.Column("node_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=True),
        sa.Column("leased_until", tidings.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_id_nodes")),
    )
    free = datetime(1970, 1, 1, tzinfo=UTC)
    op.bulk_insert(table, [{"node_id": n, "leased_until": free} for n in range(NODES)])


def downgrade() -> None:
    op.drop_table("id_nodes")
