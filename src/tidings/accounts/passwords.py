"""Refuse common and breached passwords, offline.

The list is zxcvbn's 30,000 most common passwords (from leaked password corpora), which ships
inside the zxcvbn package: no network at run time. Loaded on first use, not at import.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _common() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"])


def is_common(password: str) -> bool:
    return password.lower() in _common()


def check_not_common(password: str) -> str:
    if is_common(password):
        raise ValueError("this password is too common (it appears in breached-password lists)")
    return password
