"""Two-step sign-in (ASVS 6.3.3): after the password (or a sign-in provider), a code from an
authenticator app (TOTP, RFC 6238: 6 digits, 30-second steps, one step of clock drift either
way, each step used once) or one of ten one-time recovery codes.

Turning it on needs the holder's proof and a first code; turning it off the proof and a code.
Both are mailed to the account's address and audited; turning it on signs the other sessions
out. An admin can turn it off for someone who lost both authenticator and codes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pyotp
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.accounts.schemas import Reauthentication
from tidings.accounts.service import get_account, named_account, prove_holder
from tidings.audit.service import AuditAction, record_audit
from tidings.auth.policy import Principal
from tidings.auth.providers.crypto import TokenCipher, derive_key
from tidings.auth.repository import AuthRepository
from tidings.core.db import utcnow
from tidings.core.errors import (
    Conflict,
    FieldError,
    NotFound,
    OAuthError,
    RateLimited,
    ValidationFailed,
)
from tidings.core.security import PasswordHasher, hash_token
from tidings.mail.service import tell_holder
from tidings.mfa.repository import MfaRepository
from tidings.mfa.schemas import MfaOff, MfaStatus, RecoveryCodes, TotpStarted
from tidings.ratelimit.limiter import RateLimiter
from tidings.settings import Settings

if TYPE_CHECKING:
    from tidings.core.container import Container

log = structlog.get_logger(__name__)
ISSUER = "Tidings"
STEP_SECONDS = 30
RECOVERY_CODES = 10
LOCKOUT = "mfa_lockout"
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper


_SIX_DIGITS = re.compile(r"[0-9]{6}")
_RECOVERY_CODE = re.compile(f"[{_ALPHABET}]{{10}}")
# scrypt (RFC 7914) at n=2**14, r=8: ≈40 ms and 16 MiB a guess on this machine kind; a code
# has ≈49.5 bits (ten of 31 symbols), below ASVS's 112 for an unsalted hash
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32, "maxmem": 64 * 1024 * 1024}


def cipher_for(settings: Settings, secret_key: bytes) -> TokenCipher:
    """Encrypts with the first of ``TIDINGS_TOKEN_ENCRYPTION_KEYS`` when set, and always also
    opens what a key derived from the app secret sealed (enabling sign-in providers later,
    which makes those keys required, must not lock every authenticator out)."""
    derived = base64.urlsafe_b64encode(derive_key(secret_key, "tidings provider-token encryption"))
    configured = settings.token_encryption_keys
    keys = (
        [k.strip().encode() for k in configured.get_secret_value().split(",") if k.strip()]
        if configured is not None
        else []
    )
    return TokenCipher([*keys, derived])


def _secret(cipher: TokenCipher, sealed: str, user_id: int) -> str | None:
    """The authenticator's secret, or None when no configured key opens it (keys rotated
    without it): recovery codes and an admin still get the holder in."""
    try:
        return cipher.decrypt(sealed)
    except ValueError:
        log.warning("mfa_secret_unreadable", user_id=user_id)
        return None


def _matching_step(secret: str | None, code: str, now: datetime) -> int | None:
    """The time step whose code ``code`` is (now, or one step either side), or None."""
    code = code.replace(" ", "")
    if secret is None or not _SIX_DIGITS.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret, interval=STEP_SECONDS)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in (current, current - 1, current + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def _recovery_code(code: str) -> str | None:
    """``code`` as stored (dashes, spaces and case dropped), or None when it cannot be one."""
    normal = code.strip().lower().replace("-", "").replace(" ", "")
    return normal if _RECOVERY_CODE.fullmatch(normal) else None


def recovery_hash(normal: str, salt: str) -> str:
    """scrypt of the normalised code's SHA-256 with the set's salt: sets kept as plain SHA-256
    before migration 0019 were wrapped that way without their codes."""
    return hashlib.scrypt(hash_token(normal).encode(), salt=bytes.fromhex(salt), **_SCRYPT).hex()


_NO_SALT = "00" * 16  # hashed against when an account has no codes left, to take as long


@dataclass(frozen=True)
class _CodeSet:
    codes: list[str]
    salt: str
    hashes: list[str]


async def _new_code_set() -> _CodeSet:
    """Ten new recovery codes and their hashes, made before any row is locked (ten slow
    hashes, in threads)."""
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    salt = secrets.token_hex(16)
    hashes = await asyncio.gather(
        *(asyncio.to_thread(recovery_hash, c.replace("-", ""), salt) for c in codes)
    )
    return _CodeSet(codes, salt, list(hashes))


def _tell(session: AsyncSession, settings: Settings, user: User, subject: str, what: str) -> None:
    check = "check your account's two-step sign-in"
    tell_holder(session, settings, user.email, subject, what, check)


async def status(session: AsyncSession, principal: Principal) -> MfaStatus:
    repo = MfaRepository(session)
    row = await repo.confirmed(principal.user_id)
    return MfaStatus(
        enabled=row is not None,
        enabled_at=row.confirmed_at if row is not None else None,
        recovery_codes_left=await repo.codes_left(principal.user_id) if row is not None else 0,
    )


async def start_totp(
    session: AsyncSession,
    cipher: TokenCipher,
    hasher: PasswordHasher,
    limiter: RateLimiter,
    principal: Principal,
    proof: Reauthentication,
) -> TotpStarted:
    """A new secret for an authenticator app; nothing changes at sign-in until a code from
    it confirms it (:func:`confirm_totp`). Starting again replaces a pending one."""
    user = await get_account(session, principal.user_id, for_update=True)
    repo = MfaRepository(session)
    if await repo.confirmed(user.id) is not None:
        raise Conflict(
            "Two-step sign-in is already on; turn it off first to use another authenticator."
        )
    await prove_holder(session, hasher, limiter, principal, user, proof, "turn on two-step sign-in")
    secret = pyotp.random_base32()
    await repo.start(user.id, cipher.encrypt(secret), utcnow())
    uri = pyotp.TOTP(secret, interval=STEP_SECONDS).provisioning_uri(
        name=user.username, issuer_name=ISSUER
    )
    return TotpStarted(
        secret=secret,
        otpauth_uri=uri,
        detail="Add it to an authenticator app, then send a code it shows to "
        "POST /api/v1/me/mfa/totp/confirm.",
    )


async def confirm_totp(
    session: AsyncSession,
    settings: Settings,
    cipher: TokenCipher,
    principal: Principal,
    code: str,
) -> RecoveryCodes:
    """The first code from the authenticator turns two-step sign-in on: the recovery codes
    (shown once), the other sessions signed out, the address told."""
    made = await _new_code_set()
    user = await get_account(session, principal.user_id, for_update=True)
    repo = MfaRepository(session)
    row = await repo.totp(user.id)
    if row is None:
        raise Conflict("Start with POST /api/v1/me/mfa/totp: there is no authenticator to confirm.")
    if row.confirmed_at is not None:
        raise Conflict("Two-step sign-in is already on.")
    now = utcnow()
    secret = _secret(cipher, row.secret_encrypted, user.id)
    if secret is None:
        raise Conflict("This authenticator can no longer be read; start again.")
    step = _matching_step(secret, code, now)
    if step is None or not await repo.use_step(user.id, step):
        raise ValidationFailed(
            "The code does not match: check the authenticator's clock and try the next one.",
            errors=[FieldError(loc=["body", "code"], msg="does not match")],
        )
    await repo.confirm(user.id, now)
    codes = await _fresh_codes(session, user.id, made)
    await AuthRepository(session).revoke_others(user.id, principal.session_id, "mfa_enabled")
    await record_audit(
        session, AuditAction.MFA_ENABLED, actor_id=user.id, target_type="user", target_id=user.id
    )
    _tell(
        session,
        settings,
        user,
        "Two-step sign-in was turned on",
        f"Signing in to @{user.username} now also asks for a code from an authenticator app; "
        "every other session was signed out.",
    )
    return RecoveryCodes(recovery_codes=codes)


async def second_factor(
    session: AsyncSession, cipher: TokenCipher, user_id: int, code: str, now: datetime
) -> str | None:
    """Which second factor ``code`` is for the account — ``"totp"`` (a step not used yet) or
    ``"recovery"`` (a code not used yet, used up now) — or None."""
    repo = MfaRepository(session)
    row = await repo.confirmed(user_id)
    if row is None:
        return None
    step = _matching_step(_secret(cipher, row.secret_encrypted, user_id), code, now)
    if step is not None:
        return "totp" if await repo.use_step(user_id, step) else None
    normal = _recovery_code(code)
    if normal is None:
        return None
    salts = await repo.code_salts(user_id)
    for salt in salts or [_NO_SALT]:
        hashed = await asyncio.to_thread(recovery_hash, normal, salt)
        if salts and await repo.use_code(user_id, hashed, now):
            return "recovery"
    return None


async def _holder_with_code(
    session: AsyncSession,
    cipher: TokenCipher,
    hasher: PasswordHasher,
    limiter: RateLimiter,
    principal: Principal,
    body: MfaOff,
    doing: str,
) -> User:
    """The account, locked, once two-step sign-in is on, the holder's proof holds and
    ``body.code`` is a second factor not used yet (404, or a 422 naming the field)."""
    user = await get_account(session, principal.user_id, for_update=True)
    if await MfaRepository(session).confirmed(user.id) is None:
        raise NotFound("Two-step sign-in is not on.")
    await prove_holder(session, hasher, limiter, principal, user, body, doing)
    if await second_factor(session, cipher, user.id, body.code, utcnow()) is None:
        raise ValidationFailed(
            "The code does not match (or was used already).",
            errors=[FieldError(loc=["body", "code"], msg="does not match")],
        )
    return user


async def _fresh_codes(session: AsyncSession, user_id: int, made: _CodeSet) -> list[str]:
    """``made`` in place of any codes the account had; only their hashes are kept."""
    await MfaRepository(session).replace_codes(user_id, made.salt, made.hashes)
    return made.codes


async def turn_off(
    session: AsyncSession,
    settings: Settings,
    cipher: TokenCipher,
    hasher: PasswordHasher,
    limiter: RateLimiter,
    principal: Principal,
    body: MfaOff,
) -> None:
    user = await _holder_with_code(
        session, cipher, hasher, limiter, principal, body, "turn off two-step sign-in"
    )
    await _remove(session, settings, user, actor_id=user.id)


async def new_recovery_codes(
    session: AsyncSession,
    settings: Settings,
    cipher: TokenCipher,
    hasher: PasswordHasher,
    limiter: RateLimiter,
    principal: Principal,
    body: MfaOff,
) -> RecoveryCodes:
    """Ten new recovery codes for the old ones (used up, or seen by someone): the holder's
    proof and a code (the authenticator's, or one of the old recovery codes)."""
    made = await _new_code_set()
    user = await _holder_with_code(
        session, cipher, hasher, limiter, principal, body, "get new recovery codes"
    )
    codes = await _fresh_codes(session, user.id, made)
    await record_audit(
        session,
        AuditAction.MFA_CODES_REPLACED,
        actor_id=user.id,
        target_type="user",
        target_id=user.id,
    )
    _tell(
        session,
        settings,
        user,
        "New recovery codes were made",
        f"@{user.username} has ten new recovery codes for two-step sign-in; the old ones no "
        "longer work.",
    )
    return RecoveryCodes(recovery_codes=codes)


async def admin_turn_off(
    session: AsyncSession,
    settings: Settings,
    hasher: PasswordHasher,
    limiter: RateLimiter,
    actor: Principal,
    proof: Reauthentication,
    username: str,
) -> None:
    """For someone who lost both the authenticator and the recovery codes (checked by the
    operators some other way): the admin's own proof (a stolen admin token alone must not
    strip anyone's second step), audited, and the address told."""
    admin = await get_account(session, actor.user_id)
    doing = f"turn off two-step sign-in for @{username}"
    await prove_holder(session, hasher, limiter, actor, admin, proof, doing)
    user = await named_account(session, username, for_update=True)
    if user.id == actor.user_id:
        # the own second step goes only with one of its codes: a stolen admin token and
        # password must not strip it and enrol the thief's authenticator in its place
        raise Conflict(
            "Your own two-step sign-in is turned off with DELETE /api/v1/me/mfa (your "
            "password and a code)."
        )
    if await MfaRepository(session).confirmed(user.id) is None:
        raise NotFound(f"Two-step sign-in is not on for @{user.username}.")
    await _remove(session, settings, user, actor_id=actor.user_id)


async def _remove(session: AsyncSession, settings: Settings, user: User, actor_id: int) -> None:
    await MfaRepository(session).remove(user.id)
    await record_audit(
        session,
        AuditAction.MFA_DISABLED,
        actor_id=actor_id,
        target_type="user",
        target_id=user.id,
        by="admin" if actor_id != user.id else "self",
    )
    _tell(
        session,
        settings,
        user,
        "Two-step sign-in was turned off",
        f"Signing in to @{user.username} no longer asks for a code from an authenticator app"
        + (" (turned off by an administrator)." if actor_id != user.id else "."),
    )


async def recovery_code_used(session: AsyncSession, settings: Settings, user: User) -> None:
    """A sign-in used a recovery code: the address is told, with how many are left."""
    left = await MfaRepository(session).codes_left(user.id)
    _tell(
        session,
        settings,
        user,
        "A recovery code was used to sign in",
        f"@{user.username} was signed in to with a recovery code; recovery codes left: {left}.",
    )


async def check_sign_in(
    session: AsyncSession, container: Container, user: User, otp: str | None
) -> None:
    """At sign-in (the password grant, a provider's login code), once the first factor held:
    an account with two-step sign-in on needs ``otp`` too. Missing: ``mfa_required`` (nothing
    used up). Wrong or used already: ``invalid_grant``, audited (committed with the refusal)."""
    if await MfaRepository(session).confirmed(user.id) is None:
        return
    if otp is None:
        raise OAuthError(
            "mfa_required",
            "This account has two-step sign-in: send the code its authenticator app shows "
            "(or a recovery code) as otp, with the rest of this request.",
        )
    # per account, across both grants and every client: whoever gets this far has the first
    # factor (or the provider account); counted before the check, the 15 minutes forgiven
    # after a right code (as the re-authentication lockout)
    key, limiter = str(user.id), container.limiter
    try:
        await limiter.enforce(LOCKOUT, key)
    except RateLimited as exc:
        exc.detail = (
            "Too many wrong one-time codes for this account; "
            f"try again in {exc.extra.get('retry_after')} s."
        )
        raise
    cipher = cipher_for(container.settings, container.keys.secret_key)
    used = await second_factor(session, cipher, user.id, otp.strip(), utcnow())
    if used is not None:
        await limiter.reset(LOCKOUT, key, shortest_only=True)
    if used is None:
        await record_audit(
            session, AuditAction.MFA_FAILED, actor_id=user.id, target_type="user", target_id=user.id
        )
        raise OAuthError(
            "invalid_grant",
            "The one-time code does not match, or was used already.",
            keep_changes=True,
        )
    if used == "recovery":
        await record_audit(
            session,
            AuditAction.MFA_RECOVERY_USED,
            actor_id=user.id,
            target_type="user",
            target_id=user.id,
        )
        await recovery_code_used(session, container.settings, user)
