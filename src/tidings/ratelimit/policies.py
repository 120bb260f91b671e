"""Every rate-limit policy in one table; each can be overridden by TIDINGS_RATE_LIMITS.

Budgets follow large public APIs: generous for reading, tight for anything an attacker or a
spammer would repeat. The per-account login budget is twice the per-IP one on purpose: one
client hammering an account is stopped by its IP budget (and the lockout) before it can use up
the account's budget, so the owner can still sign in from elsewhere; a distributed attack on one
account still hits the account budget.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from limits import RateLimitItem, parse_many

Scope = Literal["ip", "user", "session", "account"]


@dataclass(frozen=True)
class Policy:
    name: str
    limits: str  # e.g. "300/5 minutes" or "5/15 minutes;10/hour"
    scope: Scope
    fail_closed: bool = False  # with the shared store down: refuse (True) or fall back per process

    def items(self) -> list[RateLimitItem]:
        return list(parse_many(self.limits))


DEFAULT_POLICIES: dict[str, Policy] = {
    p.name: p
    for p in (
        Policy("anonymous", "300/5 minutes", "ip"),
        Policy("authenticated", "1500/5 minutes", "user"),
        Policy("login_ip", "25/5 minutes", "ip", fail_closed=True),
        Policy("login_account", "50/5 minutes", "account", fail_closed=True),
        # Progressive lockout after failed sign-ins, per account and client.
        Policy("login_lockout", "5/15 minutes;10/hour;20/day", "account", fail_closed=True),
        # Wrong passwords typed again before a sensitive change, per sign-in session
        # (src/tidings/auth/reauth.py).
        Policy("reauth_lockout", "5/15 minutes;10/hour;20/day", "session", fail_closed=True),
        Policy("token_refresh", "60/5 minutes", "ip"),
        Policy("register", "10/hour", "ip", fail_closed=True),
        Policy("password_change", "5/hour", "session", fail_closed=True),
        Policy("account_delete", "5/hour", "session", fail_closed=True),
        Policy("session_end", "20/hour", "session", fail_closed=True),
        Policy("identity_change", "20/hour", "session", fail_closed=True),
        Policy("step_up", "20/hour", "session", fail_closed=True),
        Policy("mfa_change", "10/hour", "session", fail_closed=True),
        # wrong one-time codes of two-step sign-in, per account (src/tidings/mfa/service.py)
        Policy("mfa_lockout", "5/15 minutes;10/hour;20/day", "account", fail_closed=True),
        Policy("account_export", "10/hour", "user"),
        # finding accounts by a username prefix: per user, per IP when anonymous (a walk of
        # every name takes many pages)
        Policy("user_search", "30/minute;300/hour", "user"),
        Policy("password_reset", "10/hour", "ip", fail_closed=True),
        Policy("recovery_confirm", "30/hour", "ip", fail_closed=True),
        Policy("email_verification", "5/hour", "user", fail_closed=True),
        Policy("email_change", "5/hour", "session", fail_closed=True),
        Policy("post_create", "100/hour", "user"),
        Policy("comment_create", "300/hour", "user"),
        Policy("follow", "200/hour", "user"),
        Policy("like", "1000/hour", "user"),
        Policy("share", "300/hour", "user"),
        Policy("bookmark", "1000/hour", "user"),
        Policy("webhook_create", "20/hour", "user"),
        Policy("report_create", "30/hour", "user"),
    )
}


def build_policies(overrides: dict[str, str]) -> dict[str, Policy]:
    policies = dict(DEFAULT_POLICIES)
    for name, limits in overrides.items():
        if name not in policies:
            raise ValueError(f"unknown rate-limit policy {name!r}; known: {sorted(policies)}")
        parse_many(limits)  # raises on a malformed limit string
        policies[name] = replace(policies[name], limits=limits)
    return policies
