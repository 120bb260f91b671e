"""The browser flow: start (authorize, or a link ticket), then the provider's callback.

``state`` is one-time (claimed in the database) and bound to the browser by a signed cookie;
PKCE (S256) protects our code exchange and, for OIDC, ``nonce`` ties the ID token to this flow.
Services never commit; on an error after the state was claimed the claim alone is kept
(``keep_changes``) so that the same state can never be tried again.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from authlib.common.security import generate_token  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.accounts.schemas import Reauthentication
from tidings.accounts.service import STEP_UP_WINDOW, get_account, prove_holder
from tidings.audit.service import AuditAction, record_audit
from tidings.auth.policy import Principal
from tidings.auth.providers import linking
from tidings.auth.providers.base import (
    AuthorizationParams,
    ProviderProfile,
    ProviderRejected,
)
from tidings.auth.providers.codes import issue_login_code, with_query
from tidings.auth.providers.crypto import STATE_TTL_SECONDS
from tidings.auth.providers.models import OAuthAuthorization
from tidings.auth.providers.registry import ProviderRegistry
from tidings.auth.providers.repository import ProviderRepository
from tidings.auth.providers.schemas import LinkStarted, StepUpDone
from tidings.auth.repository import AuthRepository
from tidings.core.errors import (
    BadRequest,
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    ValidationFailed,
)
from tidings.core.security import PasswordHasher, hash_token
from tidings.ratelimit.limiter import RateLimiter

FLOW_TTL = timedelta(seconds=STATE_TTL_SECONDS)
REAUTH = "reauth"
CODE_TTL = timedelta(minutes=2)  # for the app to redeem a confirmation's code
# how far an OpenID provider's auth_time may lie before the confirmation started (clock skew)
AUTH_TIME_LEEWAY = timedelta(seconds=60)


@dataclass(frozen=True)
class AppRequest:
    """What the app asked for when it sent the browser to authorize."""

    redirect_uri: str | None
    state: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None


@dataclass(frozen=True)
class Started:
    provider_url: str  # send the browser here
    state: str  # and bind it to the browser with the state cookie


@dataclass(frozen=True)
class Callback:
    code: str | None
    state: str | None
    error: str | None = None
    error_description: str | None = None
    iss: str | None = None


def _secret() -> str:
    value: str = generate_token(48)
    return value


def check_redirect_uri(registry: ProviderRegistry, uri: str | None, where: str = "query") -> str:
    """Exact string match against TIDINGS_OAUTH_REDIRECT_URIS: no prefixes, no normalising."""
    if not uri:
        raise BadRequest(
            "redirect_uri is required.",
            errors=[FieldError(loc=[where, "redirect_uri"], msg="field required")],
        )
    if uri not in registry.redirect_uris:
        raise BadRequest(
            "redirect_uri is not registered: it must equal one of TIDINGS_OAUTH_REDIRECT_URIS "
            "exactly (same scheme, host, path, query and trailing slash).",
            errors=[FieldError(loc=[where, "redirect_uri"], msg="not a registered redirect URI")],
        )
    return uri


def _check_app_pkce(app: AppRequest) -> None:
    if app.code_challenge is None:
        if app.code_challenge_method is not None:
            raise BadRequest("code_challenge_method was sent without a code_challenge.")
        return
    if app.code_challenge_method != "S256":
        raise BadRequest(
            "code_challenge_method must be S256 (plain is not accepted).",
            errors=[FieldError(loc=["query", "code_challenge_method"], msg="must be S256")],
        )


def _params(
    flow_state: str, verifier: str, nonce: str | None, callback_url: str, intent: str
) -> AuthorizationParams:
    return AuthorizationParams(
        state=flow_state,
        code_verifier=verifier,
        redirect_uri=callback_url,
        nonce=nonce,
        # confirming the holder: an OpenID provider is asked to authenticate the user afresh
        max_age=0 if intent == REAUTH else None,
    )


async def start_login(
    session: AsyncSession,
    registry: ProviderRegistry,
    provider_name: str,
    app: AppRequest,
    callback_url: str,
    now: datetime,
) -> Started:
    provider = registry.get(provider_name)
    redirect_uri = check_redirect_uri(registry, app.redirect_uri)
    _check_app_pkce(app)
    state, verifier = _secret(), _secret()
    nonce = _secret() if provider.uses_nonce else None
    url = await provider.authorization_url(
        registry.http, _params(state, verifier, nonce, callback_url, "login")
    )
    flow = OAuthAuthorization(
        provider=provider_name,
        intent="login",
        state_hash=hash_token(state),
        nonce=nonce,
        code_verifier_encrypted=registry.cipher.encrypt(verifier),
        redirect_uri=redirect_uri,
        app_state=app.state,
        code_challenge=app.code_challenge,
        code_challenge_method=app.code_challenge_method,
        expires_at=now + FLOW_TTL,
    )
    await ProviderRepository(session).add_authorization(flow, now)
    return Started(url, state)


async def start_link(
    session: AsyncSession,
    registry: ProviderRegistry,
    hasher: PasswordHasher,
    limiter: RateLimiter,
    principal: Principal,
    provider_name: str,
    proof: Reauthentication,
    redirect_uri: str,
    app_state: str | None,
    public_base: str,
    now: datetime,
) -> LinkStarted:
    """A signed-in user starts linking: a one-time ticket URL for their browser to open. The
    holder proves it is them first (``proof``): a stolen access token must not be able to
    add a provider account of the thief's, a way in that outlives every password change."""
    provider = registry.get(provider_name)
    check_redirect_uri(registry, redirect_uri, "body")
    repo = ProviderRepository(session)
    if await repo.identity_of_user(principal.user_id, provider_name) is not None:
        raise Conflict(
            f"Your account already has a {provider.display_name} account linked; unlink it first."
        )
    user = await get_account(session, principal.user_id)
    await prove_holder(session, hasher, limiter, principal, user, proof, "link a sign-in")
    return await _ticket(
        repo, "link", principal, provider_name, redirect_uri, app_state, public_base, now
    )


async def start_reauth(
    session: AsyncSession,
    registry: ProviderRegistry,
    principal: Principal,
    provider_name: str,
    redirect_uri: str,
    app_state: str | None,
    code_challenge: str,
    public_base: str,
    now: datetime,
) -> LinkStarted:
    """The holder of an account without a password confirms it is them (before deleting it,
    setting a first password, linking or unlinking a provider, ending sessions): a one-time
    ticket URL for their browser, through a provider linked to the account. A stolen access
    token cannot finish it: that needs the provider account (an OpenID provider is asked to
    authenticate the user afresh, ``max_age=0``), and the code the browser brings back is
    redeemed only with the verifier of ``code_challenge`` — held by whoever started, so a
    thief who started one and got the owner's browser to finish it has no code, and the
    owner's app, holding the code, has no verifier (even on the very session the token was
    stolen from)."""
    provider = registry.get(provider_name)
    check_redirect_uri(registry, redirect_uri, "body")
    await get_account(session, principal.user_id)
    repo = ProviderRepository(session)
    if await repo.identity_of_user(principal.user_id, provider_name) is None:
        raise NotFound(f"No {provider.display_name} sign-in is linked to your account.")
    return await _ticket(
        repo,
        REAUTH,
        principal,
        provider_name,
        redirect_uri,
        app_state,
        public_base,
        now,
        code_challenge=code_challenge,
    )


async def _ticket(
    repo: ProviderRepository,
    intent: str,
    principal: Principal,
    provider_name: str,
    redirect_uri: str,
    app_state: str | None,
    public_base: str,
    now: datetime,
    *,
    code_challenge: str | None = None,
) -> LinkStarted:
    """A flow of the signed-in user's, waiting for their browser: the URL it opens, once."""
    ticket = _secret()
    await repo.add_authorization(
        OAuthAuthorization(
            provider=provider_name,
            intent=intent,
            user_id=principal.user_id,
            session_id=principal.session_id,
            ticket_hash=hash_token(ticket),
            redirect_uri=redirect_uri,
            app_state=app_state,
            code_challenge=code_challenge,
            code_challenge_method=None if code_challenge is None else "S256",
            expires_at=now + FLOW_TTL,
        ),
        now,
    )
    query = urlencode({"link_ticket": ticket})
    return LinkStarted(
        authorization_url=f"{public_base}/api/v1/auth/{provider_name}/authorize?{query}",
        expires_in=int(FLOW_TTL.total_seconds()),
    )


async def redeem_link_ticket(
    session: AsyncSession,
    registry: ProviderRegistry,
    provider_name: str,
    ticket: str,
    callback_url: str,
    now: datetime,
) -> Started:
    """The browser arrives with a ticket (to link, or to confirm the holder): bind it to this
    browser (once) and go on."""
    provider = registry.get(provider_name)
    repo = ProviderRepository(session)
    state, verifier = _secret(), _secret()
    nonce = _secret() if provider.uses_nonce else None
    # a URL first, with no transaction open while OpenID discovery may fetch (then cached);
    # the one to send depends on what the ticket is for
    url = await provider.authorization_url(
        registry.http, _params(state, verifier, nonce, callback_url, "link")
    )
    intent = await repo.ticket_intent(hash_token(ticket), provider_name, now)
    if intent == REAUTH:
        url = await provider.authorization_url(
            registry.http, _params(state, verifier, nonce, callback_url, intent)
        )
    flow = await repo.bind_ticket(
        hash_token(ticket),
        provider_name,
        now,
        {
            "state_hash": hash_token(state),
            "nonce": nonce,
            "code_verifier_encrypted": registry.cipher.encrypt(verifier),
        },
    )
    if flow is None or flow.intent != intent:
        raise BadRequest("The ticket is unknown, expired or already used; start again.")
    return Started(url, state)


async def claim(
    session: AsyncSession,
    registry: ProviderRegistry,
    provider_name: str,
    callback: Callback,
    cookie: str | None,
    now: datetime,
) -> OAuthAuthorization:
    """The callback's first unit of work: the state matches this browser's cookie and is used
    up, whatever follows (committed before the provider is asked anything)."""
    registry.get(provider_name)  # 404 for a provider that is not enabled
    expected = registry.cookie.state_from(cookie, provider_name)
    if not callback.state:
        raise BadRequest("The state parameter is missing.")
    if not hmac.compare_digest(expected.encode(), callback.state.encode()):
        raise BadRequest("The state does not match this browser's sign-in cookie.")
    flow = await ProviderRepository(session).claim_state(
        hash_token(callback.state), provider_name, now
    )
    if flow is None:
        raise BadRequest("This sign-in is unknown, expired or already completed; start again.")
    return flow


async def verify(
    registry: ProviderRegistry, flow: OAuthAuthorization, callback: Callback, callback_url: str
) -> ProviderProfile:
    """Between the callback's two units of work, with no transaction open: the provider's
    answer (code exchange, ID token or user API), which may take seconds."""
    provider = registry.get(flow.provider)
    if callback.error:
        detail = f" ({callback.error_description})" if callback.error_description else ""
        raise ProviderRejected(
            f"{provider.display_name} did not sign you in: {callback.error}{detail}."
        )
    if not callback.code:
        raise BadRequest("The code parameter is missing.")
    try:
        verifier = registry.cipher.decrypt(flow.code_verifier_encrypted or "")
    except ValueError as exc:  # the encryption keys changed mid-flow
        raise BadRequest("This sign-in can no longer be completed; start again.") from exc
    params = _params(callback.state or "", verifier, flow.nonce, callback_url, flow.intent)
    return await provider.complete(registry.http, params, callback.code, callback.iss)


async def finish(
    session: AsyncSession,
    registry: ProviderRegistry,
    flow: OAuthAuthorization,
    profile: ProviderProfile,
    now: datetime,
) -> str:
    """The callback's second unit of work: sign in, register or link as the database says now;
    or confirm the holder; returns where to send the browser (the app, with ?code=, ?linked=
    or ?reauthenticated=)."""
    provider = registry.get(flow.provider)
    if flow.intent == REAUTH:
        check_fresh(provider.display_name, profile.auth_time, flow.created_at)
        await linking.check_holder(session, provider, profile, flow.user_id, flow.session_id)
        code = _secret()
        await ProviderRepository(session).set_result(flow.id, hash_token(code), now + CODE_TTL)
        return with_query(
            flow.redirect_uri, reauthenticated=flow.provider, code=code, state=flow.app_state
        )
    if flow.intent == "link":
        plan = await linking.plan_link(session, provider, profile, flow.user_id, flow.session_id)
    else:
        plan = await linking.plan_login(session, provider, profile)
    cipher = registry.cipher if registry.settings.oauth_keep_provider_tokens else None
    user = await linking.apply_plan(
        session, registry.settings, plan, provider, profile, cipher, now
    )
    if flow.intent == "link":
        return with_query(flow.redirect_uri, linked=flow.provider, state=flow.app_state)
    return await issue_login_code(session, flow, user.id, now)


async def finish_reauth(
    session: AsyncSession, principal: Principal, code: str, code_verifier: str, now: datetime
) -> StepUpDone:
    """The app that asked brings back the code its browser came back with, and the verifier
    of the challenge it started with: from now, for
    :data:`~tidings.accounts.service.STEP_UP_WINDOW`, the session counts as confirmed by its
    holder. A code is no use to another session, nor without the verifier."""
    flow = await ProviderRepository(session).claim_result(
        hash_token(code), create_s256_code_challenge(code_verifier), principal.session_id, now
    )
    if flow is None:  # as an unusable reset or change-of-address token is answered
        raise ValidationFailed(
            "The confirmation code is invalid, expired or already used, was asked for by "
            "another session, or the code_verifier does not match; start again.",
            errors=[FieldError(loc=["body", "code"], msg="not usable")],
        )
    user = await get_account(session, principal.user_id)
    if not await AuthRepository(session).mark_reauthenticated(principal.session_id, now):
        raise Forbidden("You signed out meanwhile; sign in and start again.")
    await record_audit(
        session,
        AuditAction.REAUTHENTICATED,
        actor_id=user.id,
        target_type="session",
        target_id=principal.session_id,
        provider=flow.provider,
    )
    return StepUpDone(provider=flow.provider, expires_at=now + STEP_UP_WINDOW)


def check_fresh(display_name: str, auth_time: float | None, started_at: datetime) -> None:
    """An OpenID provider that says when it authenticated the user must have done so after
    the confirmation started (it was asked for ``max_age=0``). A provider that does not say
    (GitHub has no such parameter; Google does not document it) is trusted only to have
    checked that the browser holds the account."""
    if auth_time is None:
        return
    try:
        when = datetime.fromtimestamp(auth_time, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ProviderRejected(f"{display_name} sent an impossible auth_time.") from exc
    if when < started_at - AUTH_TIME_LEEWAY:
        raise ProviderRejected(
            f"{display_name} did not ask you to sign in again (its sign-in predates this "
            "confirmation); start again."
        )
