"""The webhook dispatcher: claims due deliveries, sends them (bounded concurrency), records
each outcome, and runs the delivery lifecycle.

    pending ──2xx──────────────────────────────▶ delivered
       │ ──410 Gone───────────────────────────▶ dead (subscription disabled)
       │ ──3xx / 4xx / 5xx / error / refused──▶ pending again after the next delay of the
       │                                        schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
       │                                        24 h, each ± jitter)
       └──schedule exhausted──────────────────▶ dead (subscription disabled, owner told)

A claim moves ``next_attempt_at`` past the send timeout (a lease) and stamps the row with a
token, so a dispatcher that dies mid-send leaves the delivery due again, and a redelivery reset
in the meantime is not overwritten. A per-subscription circuit breaker opens after N
consecutive failures: its deliveries stay pending until the cool-down ends, then one probe
goes out; a success closes it. The clock (``now``) is injectable for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.db import Database, utcnow
from tidings.core.metrics import bump, metrics
from tidings.settings import Settings
from tidings.webhooks import repository as repo
from tidings.webhooks import service
from tidings.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from tidings.webhooks.sender import AddressPolicy, SafeHttpSender, Sender, SenderLimits, SendResult
from tidings.webhooks.signing import SecretCipher, signed_headers

log = structlog.get_logger("tidings.webhooks")
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class DispatchPolicy:
    schedule: tuple[timedelta, ...] = tuple(
        timedelta(seconds=s) for s in (5, 300, 1800, 7200, 18_000, 36_000, 86_400)
    )
    jitter: float = 0.1  # each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
    breaker_threshold: int = 5
    breaker_cooldown: timedelta = timedelta(minutes=5)
    concurrency: int = 10
    batch_size: int = 100
    lease: timedelta = timedelta(seconds=60)

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchPolicy:
        return cls(
            schedule=tuple(timedelta(seconds=s) for s in settings.webhook_retry_schedule),
            breaker_threshold=settings.webhook_breaker_threshold,
            breaker_cooldown=timedelta(seconds=settings.webhook_breaker_cooldown_seconds),
            concurrency=settings.webhook_concurrency,
            lease=timedelta(seconds=settings.webhook_timeout_seconds + 50),
        )

    @property
    def max_attempts(self) -> int:
        return 1 + len(self.schedule)


@dataclass(frozen=True)
class Claim:
    """One attempt in hand: everything needed to send, with no database session open."""

    delivery_id: int
    token: str
    url: str
    message_id: str
    payload: str
    secrets: tuple[str, ...]
    problem: str | None = None  # set when the attempt cannot even be signed


class WebhookDispatcher:
    def __init__(
        self,
        db: Database,
        sender: Sender,
        cipher: SecretCipher,
        policy: DispatchPolicy | None = None,
        *,
        now: Clock = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.sender = sender
        self.cipher = cipher
        self.policy = policy or DispatchPolicy()
        self.now = now
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security

    async def run(self, stop: asyncio.Event, poll_seconds: float = 1.0) -> None:
        """Dispatch until ``stop`` is set; a busy pass is followed by another at once."""
        while not stop.is_set():
            try:
                busy = await self.run_once()
            except Exception as exc:
                log.warning("webhook_dispatch_failed", error=f"{type(exc).__name__}: {exc}")
                busy = 0
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_seconds)

    async def run_once(self) -> int:
        """One pass: claim what is due, send it, record the outcomes; returns the claim count."""
        now = self.now()
        async with self.db.unit_of_work(write=False) as session:  # a cheap look, no write lock
            if not await repo.any_due(session, now):
                return 0
        claims = await self._claim(now)
        gate = asyncio.Semaphore(self.policy.concurrency)

        async def attempt(claim: Claim) -> None:
            async with gate:
                try:
                    result = await self._send(claim)
                except Exception as exc:  # a bug must cost an attempt, not loop forever
                    result = SendResult(error=f"internal error: {type(exc).__name__}: {exc}")
            await self._record(claim, result)

        outcomes = await asyncio.gather(*(attempt(c) for c in claims), return_exceptions=True)
        for claim, outcome in zip(claims, outcomes, strict=True):
            if isinstance(outcome, Exception):  # the lease expires and the delivery comes back
                log.warning(
                    "webhook_record_failed", delivery_id=claim.delivery_id, error=repr(outcome)
                )
        return len(claims)

    async def _claim(self, now: datetime) -> list[Claim]:
        claims: list[Claim] = []
        taken: Counter[int] = Counter()
        async with self.db.unit_of_work(write=True) as session:
            rows = await repo.claim_due(
                session, now, self.policy.batch_size, skip_locked=not self.db.is_sqlite
            )
            for delivery, subscription in rows:
                if taken[subscription.id] >= self._budget(subscription):
                    continue
                taken[subscription.id] += 1
                if subscription.consecutive_failures >= self.policy.breaker_threshold:
                    # half-open: this one probe goes; the rest wait for its outcome
                    subscription.circuit_open_until = now + self.policy.breaker_cooldown
                delivery.claim = secrets.token_hex(8)
                delivery.next_attempt_at = now + self.policy.lease
                claims.append(self._claim_of(delivery, subscription, now))
        return claims

    def _budget(self, subscription: WebhookSubscription) -> int:
        """How many attempts one pass may make to one endpoint: no more than would take it to
        the breaker threshold if they all failed (so at most that many in flight), and a single
        probe when the circuit is half-open."""
        return max(1, self.policy.breaker_threshold - subscription.consecutive_failures)

    def _claim_of(
        self, delivery: WebhookDelivery, subscription: WebhookSubscription, now: datetime
    ) -> Claim:
        assert delivery.claim is not None
        try:
            keys = tuple(service.signing_secrets(subscription, self.cipher, now))
            problem = None
        except ValueError as exc:
            keys, problem = (), f"cannot sign: {exc}"
        return Claim(
            delivery.id,
            delivery.claim,
            subscription.url,
            delivery.message_id,
            delivery.payload,
            keys,
            problem,
        )

    async def _send(self, claim: Claim) -> SendResult:
        if claim.problem is not None:
            return SendResult(error=claim.problem, refused=True)
        headers = signed_headers(claim.message_id, self.now(), claim.payload, claim.secrets)
        return await self.sender.send(claim.url, claim.payload.encode(), headers)

    async def _record(self, claim: Claim, result: SendResult) -> None:
        now = self.now()
        async with self.db.unit_of_work(write=True) as session:
            delivery = await repo.get_delivery(session, claim.delivery_id, for_update=True)
            if delivery is None or delivery.claim != claim.token:
                return  # deleted, or reset by a redelivery while we were sending
            subscription = await repo.get_subscription(
                session, delivery.subscription_id, for_update=True
            )
            if subscription is None:
                return
            _note_attempt(delivery, result, now)
            if result.ok:
                delivery.status = DeliveryStatus.DELIVERED.value
                delivery.delivered_at, delivery.next_attempt_at = now, None
                subscription.consecutive_failures, subscription.circuit_open_until = 0, None
            elif result.status_code == 410:
                delivery.status, delivery.next_attempt_at = DeliveryStatus.DEAD.value, None
                if subscription.enabled:
                    await service.auto_disable(
                        session, subscription, "the endpoint answered 410 Gone", now
                    )
            else:
                await self._failed(session, delivery, subscription, now)
        outcome = "delivered" if result.ok else "gone" if result.status_code == 410 else "failed"
        bump(metrics().webhook_attempts, outcome)
        log.info(
            "webhook_attempt",
            delivery_id=claim.delivery_id,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error,
        )

    async def _failed(
        self,
        session: AsyncSession,
        delivery: WebhookDelivery,
        subscription: WebhookSubscription,
        now: datetime,
    ) -> None:
        subscription.consecutive_failures += 1
        if subscription.consecutive_failures >= self.policy.breaker_threshold:
            subscription.circuit_open_until = now + self.policy.breaker_cooldown
        if delivery.attempts < self.policy.max_attempts:
            delivery.next_attempt_at = now + self.delay(delivery.attempts)
            return
        delivery.status, delivery.next_attempt_at = DeliveryStatus.DEAD.value, None
        if subscription.enabled:
            reason = f"delivery {delivery.id} failed {delivery.attempts} times"
            await service.auto_disable(session, subscription, reason, now)

    def delay(self, failed_attempts: int) -> timedelta:
        """The wait after the ``failed_attempts``-th failure, with jitter."""
        base = self.policy.schedule[min(failed_attempts, len(self.policy.schedule)) - 1]
        factor = 1 + self.rng.uniform(-self.policy.jitter, self.policy.jitter)
        return base * factor


def _note_attempt(delivery: WebhookDelivery, result: SendResult, now: datetime) -> None:
    delivery.attempts += 1
    delivery.claim = None
    delivery.last_attempt_at = now
    delivery.response_status = result.status_code
    delivery.latency_ms = result.latency_ms
    delivery.response_excerpt = result.excerpt or None
    delivery.last_error = _error_of(result)


def _error_of(result: SendResult) -> str | None:
    if result.error is not None:
        return result.error[:500]
    status = result.status_code
    if status is None or 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"HTTP {status}: redirects are not followed"
    return f"HTTP {status}"


async def run_dispatcher(stop: asyncio.Event, container: Any) -> None:
    """The background loop registered with the event runtime (``container`` is the app's)."""
    settings: Settings = container.settings
    sender = SafeHttpSender(
        AddressPolicy(settings.webhook_allowed_hosts),
        SenderLimits(
            connect_timeout=settings.webhook_connect_timeout_seconds,
            total_timeout=settings.webhook_timeout_seconds,
            max_response_bytes=settings.webhook_max_response_bytes,
            max_connections=settings.webhook_concurrency,
        ),
    )
    dispatcher = WebhookDispatcher(
        container.db,
        sender,
        SecretCipher.from_settings(settings, container.keys.secret_key),
        DispatchPolicy.from_settings(settings),
    )
    try:
        await dispatcher.run(stop, settings.webhook_poll_seconds)
    finally:
        await sender.aclose()
