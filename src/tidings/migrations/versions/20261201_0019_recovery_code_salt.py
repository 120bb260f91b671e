"""recovery codes: scrypt with a salt per set (rows from before keep SHA-256, salt NULL)

Revision ID: 0019_recovery_code_salt
Revises: 0018_two_step_sign_in
Create Date: 2026-12-01 18:42:06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_recovery_code_salt"
down_revision: str | None = "0018_two_step_sign_in"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("mfa_recovery_codes") as batch:
        batch.add_column(sa.Column("salt", sa.String(length=32), nullable=True))


def downgrade() -> None:
    # salted rows cannot be checked without their salt: they go (the holders keep their
    # authenticator and can make new codes)
    op.execute("DELETE FROM mfa_recovery_codes WHERE salt IS NOT NULL")
    with op.batch_alter_table("mfa_recovery_codes") as batch:
        batch.drop_column("salt")
