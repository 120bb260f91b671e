"""Migration 0019 wraps recovery codes kept as plain SHA-256 (two-step sign-in as 0018 made it)
in scrypt with a salt per account, without their codes: the codes still work, once each, and
no plain SHA-256 of a code is left. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from tests.support.databases import admin_sql, pg_url, postgres_reachable
from tidings.accounts.models import User
from tidings.auth.providers.crypto import TokenCipher
from tidings.core.db import Database, utcnow
from tidings.core.migrate import upgrade
from tidings.core.security import hash_token
from tidings.mfa.models import MfaRecoveryCode, MfaTotp
from tidings.mfa.service import second_factor

CODES = {1: ["abcde-fghjk", "mnpqr-stuvw"], 2: ["xyz23-45678"]}


@pytest.fixture(params=["sqlite", "postgresql"])
async def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'mig.db'}"
        return
    reason = postgres_reachable()
    if reason is not None:
        pytest.skip(f"PostgreSQL not reachable: {reason}")
    name = f"tidings_m19_{uuid.uuid4().hex[:10]}"
    await admin_sql(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url(name)
    finally:
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_plain_sha256_codes_are_wrapped_and_still_work(blank_url: str) -> None:
    await asyncio.to_thread(upgrade, blank_url, "0018_two_step_sign_in")
    plain = sa.table(
        "mfa_recovery_codes",
        sa.column("id", sa.BigInteger()),
        sa.column("user_id", sa.BigInteger()),
        sa.column("code_hash", sa.String()),
    )
    # users as 0018 left the table: the columns added since (locked, 0025) are not there yet
    users = sa.Table(
        "users",
        sa.MetaData(),
        *(column._copy() for column in User.__table__.columns if column.name != "locked"),
    )
    db = Database(blank_url, pool_size=1)
    try:
        async with db.unit_of_work() as session:
            for n, codes in CODES.items():
                await session.execute(
                    sa.insert(users).values(
                        id=n, username=f"u{n}xx", username_key=f"u{n}xx", email=f"u{n}@e.org"
                    )
                )
                await session.execute(
                    sa.insert(MfaTotp.__table__).values(
                        user_id=n, secret_encrypted="x", confirmed_at=utcnow()
                    )
                )
                for i, code in enumerate(codes):
                    row = {
                        "id": n * 100 + i,
                        "user_id": n,
                        "code_hash": hash_token(code.replace("-", "")),
                    }
                    await session.execute(sa.insert(plain).values(**row))
    finally:
        await db.engine.dispose()

    await asyncio.to_thread(upgrade, blank_url)

    db = Database(blank_url, pool_size=1)
    cipher = TokenCipher([Fernet.generate_key()])  # opens no secret: "x" is none
    try:
        async with db.unit_of_work(write=False) as session:
            rows = (await session.scalars(sa.select(MfaRecoveryCode))).all()
        stored = {r.code_hash for r in rows}
        assert not stored & {hash_token(c.replace("-", "")) for c in CODES[1] + CODES[2]}
        salts = {n: {r.salt for r in rows if r.user_id == n} for n in CODES}
        assert all(len(s) == 1 for s in salts.values()), salts  # one salt per account's set
        assert salts[1] != salts[2]
        for n, codes in CODES.items():
            for code in codes:
                async with db.unit_of_work() as session:
                    used = await second_factor(session, cipher, n, code.upper(), utcnow())
                assert used == "recovery", (n, code)
                async with db.unit_of_work() as session:
                    again = await second_factor(session, cipher, n, code, utcnow())
                assert again is None, (n, code)
        async with db.unit_of_work() as session:  # another account's code is no code here
            assert await second_factor(session, cipher, 2, CODES[1][0], utcnow()) is None
    finally:
        await db.engine.dispose()
