"""sign-in providers: linked identities and one-time login codes

Revision ID: 0004_identities
Revises: 0003_audit
Create Date: 2026-11-25 18:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tidings.core.db

revision: str = "0004_identities"
down_revision: str | None = "0003_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_identities",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("email_verified", sa.Boolean(), nullable=False),
        sa.Column("access_token_encrypted", sa.Text(), nullable=True),
        sa.Column("refresh_token_encrypted", sa.Text(), nullable=True),
        sa.Column("created_at", tidings.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", tidings.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_identities_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_identities")),
        sa.UniqueConstraint("provider", "subject", name="uq_user_identities_provider_subject"),
        # Also the index that finds a user's identities.
        sa.UniqueConstraint("user_id", "provider", name="uq_user_identities_user_id_provider"),
    )
    op.create_table(
        "oauth_authorizations",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("intent", sa.String(length=8), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("session_id", sa.BigInteger(), nullable=True),
        sa.Column("state_hash", sa.String(length=64), nullable=True),
        sa.Column("ticket_hash", sa.String(length=64), nullable=True),
        sa.Column("nonce", sa.String(length=128), nullable=True),
        sa.Column("code_verifier_encrypted", sa.Text(), nullable=True),
        sa.Column("redirect_uri", sa.String(length=2048), nullable=False),
        sa.Column("app_state", sa.String(length=512), nullable=True),
        sa.Column("code_challenge", sa.String(length=128), nullable=True),
        sa.Column("code_challenge_method", sa.String(length=8), nullable=True),
        sa.Column("created_at", tidings.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", tidings.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", tidings.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["auth_sessions.id"],
            name=op.f("fk_oauth_authorizations_session_id_auth_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_oauth_authorizations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_authorizations")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_oauth_authorizations_state_hash")),
        sa.UniqueConstraint("ticket_hash", name=op.f("uq_oauth_authorizations_ticket_hash")),
    )
    with op.batch_alter_table("oauth_authorizations", schema=None) as batch_op:
        batch_op.create_index("ix_oauth_authorizations_expires_at", ["expires_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_oauth_authorizations_session_id"), ["session_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_oauth_authorizations_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "oauth_login_codes",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("redirect_uri", sa.String(length=2048), nullable=False),
        sa.Column("code_challenge", sa.String(length=128), nullable=True),
        sa.Column("code_challenge_method", sa.String(length=8), nullable=True),
        sa.Column("session_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", tidings.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", tidings.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", tidings.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["auth_sessions.id"],
            name=op.f("fk_oauth_login_codes_session_id_auth_sessions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_oauth_login_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_login_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_oauth_login_codes_code_hash")),
    )
    with op.batch_alter_table("oauth_login_codes", schema=None) as batch_op:
        batch_op.create_index("ix_oauth_login_codes_expires_at", ["expires_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_oauth_login_codes_session_id"), ["session_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_oauth_login_codes_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("oauth_login_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oauth_login_codes_user_id"))
        batch_op.drop_index(batch_op.f("ix_oauth_login_codes_session_id"))
        batch_op.drop_index("ix_oauth_login_codes_expires_at")

    op.drop_table("oauth_login_codes")
    with op.batch_alter_table("oauth_authorizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oauth_authorizations_user_id"))
        batch_op.drop_index(batch_op.f("ix_oauth_authorizations_session_id"))
        batch_op.drop_index("ix_oauth_authorizations_expires_at")

    op.drop_table("oauth_authorizations")
    op.drop_table("user_identities")
