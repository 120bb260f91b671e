"""Usernames for accounts a provider creates: from the provider's login, name or email, made
to fit ``[A-Za-z0-9_]{3,30}``, unique (ignoring case) and never a reserved name."""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Awaitable, Callable, Iterable

from tidings.accounts.schemas import RESERVED_USERNAMES

MIN_LENGTH, MAX_LENGTH = 3, 30
FALLBACK = "user"
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_]+")
_MAX_SUFFIX_TRIES = 50


def sanitise(raw: str) -> str | None:
    """``"Zoë O'Brien"`` → ``"Zoe_O_Brien"``; None when too little is left to use."""
    ascii_only = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()
    cleaned = _NOT_ALLOWED.sub("_", ascii_only).strip("_")
    cleaned = re.sub(r"__+", "_", cleaned)[:MAX_LENGTH].rstrip("_")
    return cleaned if len(cleaned) >= MIN_LENGTH else None


def base_username(hints: Iterable[str], email: str | None) -> str:
    candidates = [*hints, email.split("@", 1)[0] if email else ""]
    for raw in candidates:
        if raw and (name := sanitise(raw)) is not None:
            return name
    return FALLBACK


def with_suffix(base: str, suffix: int | str) -> str:
    tail = str(suffix)
    return base[: MAX_LENGTH - len(tail)] + tail


async def unique_username(
    hints: Iterable[str], email: str | None, taken: Callable[[str], Awaitable[bool]]
) -> str:
    """The first free name among base, base2, base3, ... (base alone when not reserved)."""
    base = base_username(hints, email)
    if base.lower() not in RESERVED_USERNAMES and not await taken(base):
        return base
    for n in range(2, _MAX_SUFFIX_TRIES + 2):
        candidate = with_suffix(base, n)
        if candidate.lower() not in RESERVED_USERNAMES and not await taken(candidate):
            return candidate
    return with_suffix(base, secrets.randbelow(10**8))  # a collision here is a 409, retried
