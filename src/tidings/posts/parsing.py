"""Hashtags, mentions and links found in post text."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

MAX_TAGS = 30
MAX_MENTIONS = 30
MAX_LINKS = 20
MAX_TAG_LENGTH = 100

# A '#' starts a tag unless it follows a word character, another '#', '&' (entities) or '/'
# (URL fragments such as https://example.com/#section).
_TAG_START = re.compile(r"(?<![\w#&/])#")
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


def _tag_char(char: str) -> bool:
    """Letters, digits, '_' and combining marks (so 'café' and 'हिन्दी' stay whole)."""
    return char.isalnum() or char == "_" or unicodedata.category(char).startswith("M")


def hashtags(text: str) -> list[str]:
    """Case-folded, unique, in order of appearance; a tag of only digits is not a tag."""
    if "#" not in text:  # NFC never composes a '#': the common case costs one scan
        return []
    return list(_hashtags(text))


@lru_cache(maxsize=4096)  # every rendered post asks again (a feed page is 20 of them)
def _hashtags(text: str) -> tuple[str, ...]:
    text = unicodedata.normalize("NFC", text)
    found: list[str] = []
    for match in _TAG_START.finditer(text):
        end = match.end()
        while end < len(text) and end - match.end() < MAX_TAG_LENGTH and _tag_char(text[end]):
            end += 1
        tag = text[match.end() : end]
        if tag and not tag.isdigit() and _tag_char(tag[0]):
            found.append(unicodedata.normalize("NFC", tag.casefold()))
    return tuple(_unique(found, MAX_TAGS))


def mentions(text: str) -> list[str]:
    if "@" not in text:
        return []
    return _unique([m.lower() for m in _MENTION.findall(text)], MAX_MENTIONS)


def _trim(url: str) -> str:
    """Drop trailing punctuation, but keep a ')' that closes a '(' inside the URL."""
    while url and url[-1] in _TRAILING:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def links(text: str) -> list[str]:
    return _unique([_trim(u) for u in _URL.findall(text)], MAX_LINKS)
