"""outbox.trace_parent: the W3C traceparent of the request that wrote the event

Revision ID: 0021_outbox_trace_parent
Revises: 0020_own_relation_lists
Create Date: 2026-12-01 19:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_outbox_trace_parent"
down_revision: str | None = "0020_own_relation_lists"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a nullable column without a default: no table rewrite on PostgreSQL
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("trace_parent", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("trace_parent")
