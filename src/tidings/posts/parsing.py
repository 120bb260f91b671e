"""Hashtags, mentions and links found in post text."""

from __future__ import annotations

import re

MAX_TAGS = 30
MAX_MENTIONS = 30
MAX_LINKS = 20

_TAG = re.compile(r"(?<![\w#&])#(\w{1,100})", re.UNICODE)
_MENTION = re.compile(r"(?<![\w@/])@([A-Za-z0-9_]{3,30})\b")
_URL = re.compile(r"\bhttps?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""


def _unique(items: list[str], limit: int) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
        if len(seen) == limit:
            break
    return list(seen)


def hashtags(text: str) -> list[str]:
    """Lower-cased, unique, in order of appearance; a tag of only digits is not a tag."""
    return _unique([t.lower() for t in _TAG.findall(text) if not t.isdigit()], MAX_TAGS)


def mentions(text: str) -> list[str]:
    return _unique([m.lower() for m in _MENTION.findall(text)], MAX_MENTIONS)


def links(text: str) -> list[str]:
    return _unique([u.rstrip(_TRAILING) for u in _URL.findall(text)], MAX_LINKS)
