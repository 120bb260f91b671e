"""recovery codes: scrypt of their SHA-256 with a salt per set; existing sets wrapped in place

Revision ID: 0019_recovery_code_salt
Revises: 0018_two_step_sign_in
Create Date: 2026-12-01 18:42:06
"""

import hashlib
import secrets
from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_recovery_code_salt"
down_revision: str | None = "0018_two_step_sign_in"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# as tidings.mfa.service.recovery_hash, kept here: a migration must not change with the code
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32, "maxmem": 64 * 1024 * 1024}
_codes = sa.table(
    "mfa_recovery_codes",
    sa.column("id", sa.BigInteger()),
    sa.column("user_id", sa.BigInteger()),
    sa.column("code_hash", sa.String()),
    sa.column("salt", sa.String()),
)


def upgrade() -> None:
    with op.batch_alter_table("mfa_recovery_codes") as batch:
        batch.add_column(sa.Column("salt", sa.String(length=32), nullable=True))
    # the stored SHA-256 of each code, wrapped in scrypt with one new salt per account's set:
    # the codes keep working, and no plain SHA-256 stays behind (≈40 ms a row)
    bind = op.get_bind()
    sets: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for row_id, user_id, code_hash in bind.execute(
        sa.select(_codes.c.id, _codes.c.user_id, _codes.c.code_hash)
    ):
        sets[user_id].append((row_id, code_hash))
    for rows in sets.values():
        salt = secrets.token_hex(16)
        for row_id, code_hash in rows:
            wrapped = hashlib.scrypt(code_hash.encode(), salt=bytes.fromhex(salt), **_SCRYPT)
            bind.execute(
                sa.update(_codes)
                .where(_codes.c.id == row_id)
                .values(code_hash=wrapped.hex(), salt=salt)
            )
    with op.batch_alter_table("mfa_recovery_codes") as batch:
        batch.alter_column("salt", existing_type=sa.String(length=32), nullable=False)


def downgrade() -> None:
    # a wrapped hash cannot be unwrapped: the codes go (the holders keep their authenticator
    # and can make new codes)
    op.execute("DELETE FROM mfa_recovery_codes")
    with op.batch_alter_table("mfa_recovery_codes") as batch:
        batch.drop_column("salt")
