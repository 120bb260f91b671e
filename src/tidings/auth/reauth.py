"""Re-authentication: the password typed again before a sensitive change (changing it or the
email address, linking or unlinking a sign-in provider, deleting the account, signing sessions
out).

A stolen access token must not become a password oracle. Wrong passwords here count toward
a lockout of their own, keyed by the sign-in session (the token's holder), like the sign-in
lockout (``reauth_lockout``: 5 per 15 minutes, 10 per hour, 20 per day), and each one is
audited (``auth:reauth_failed``). Keying by session, not by account, means someone holding a
stolen token locks out only that token, never the account's owner signing in elsewhere.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.models import User
from tidings.audit.service import AuditAction, record_audit
from tidings.auth.policy import Principal
from tidings.core.errors import FieldError, RateLimited, ValidationFailed
from tidings.core.security import PasswordHasher
from tidings.ratelimit.limiter import RateLimiter

POLICY = "reauth_lockout"


async def verify_password(
    session: AsyncSession,
    hasher: PasswordHasher,
    limiter: RateLimiter,
    principal: Principal,
    user: User,
    password: str | None,
    *,
    field: str,
    detail: str,
) -> None:
    """Return when ``password`` is the account's; else a 422 naming ``field`` (``detail`` when
    it is missing or wrong), or a 429 once this session has guessed wrong too often."""
    assert user.password_hash is not None
    key = str(principal.session_id)
    try:
        # a missing password is only checked against the lockout; a typed one is counted
        # before it is verified (and forgiven if right): a burst of parallel guesses cannot
        # all pass a check that only a finished failure would count
        await limiter.enforce(POLICY, key, test_only=password is None)
    except RateLimited as exc:
        exc.detail = (
            "Too many wrong passwords from this session; "
            f"try again in {exc.extra.get('retry_after')} s."
        )
        raise
    if password is None:
        raise ValidationFailed(
            detail, errors=[FieldError(loc=["body", field], msg="field required")]
        )
    valid, _ = await hasher.verify(password, user.password_hash)
    if valid:
        # only the 15-minute window is forgiven: a stolen token shares the owner's session,
        # and the owner's right passwords must not restart the thief's hourly and daily count
        await limiter.reset(POLICY, key, shortest_only=True)
        return
    await record_audit(
        session,
        AuditAction.REAUTH_FAILED,
        actor_id=user.id,
        target_type="session",
        target_id=principal.session_id,
    )
    # keep_changes: the answer is a 422 but its audit event must be committed (nothing was
    # written before the check in any caller)
    raise ValidationFailed(
        detail,
        errors=[FieldError(loc=["body", field], msg="does not match")],
        keep_changes=True,
    )
