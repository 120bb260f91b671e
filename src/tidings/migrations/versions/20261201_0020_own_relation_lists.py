"""indexes for the lists of one's own blocks and mutes (newest first, keyset on id)

On a large PostgreSQL database they can be built beforehand without blocking writes, with
``CREATE INDEX CONCURRENTLY`` under the same names; ``IF NOT EXISTS`` then makes this a no-op.

Revision ID: 0020_own_relation_lists
Revises: 0019_recovery_code_salt
Create Date: 2026-12-01 19:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020_own_relation_lists"
down_revision: str | None = "0019_recovery_code_salt"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_blocks_blocker_id_id", "blocks", ["blocker_id", "id"], if_not_exists=True)
    op.create_index("ix_mutes_muter_id_id", "mutes", ["muter_id", "id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_mutes_muter_id_id", table_name="mutes", if_exists=True)
    op.drop_index("ix_blocks_blocker_id_id", table_name="blocks", if_exists=True)
