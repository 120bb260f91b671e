"""``Idempotency-Key`` on creates: the first response is stored in the same transaction as the
change, and replayed to retries for 24 hours; the same key with another body is a 422.

Concurrent retries are safe: the key row is inserted first with ``ON CONFLICT DO NOTHING``, so on
PostgreSQL a second request waits for the first transaction and then replays its response; on
SQLite writers are serialised.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated

import orjson
from fastapi import Header, Request, Response
from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.core.db import insert_ignore, utcnow
from tidings.core.errors import BadRequest, Conflict, ValidationFailed
from tidings.events.models import IdempotencyRecord

HEADER = "Idempotency-Key"
TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255
# Visible ASCII, spaces only inside (an RFC 8941 string, as the Idempotency-Key draft has it).
KEY_PATTERN = r"^[\x21-\x7E](?:[\x20-\x7E]{0,253}[\x21-\x7E])?$"
# The header on a create route (declared there, so the OpenAPI document shows it).
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        max_length=MAX_KEY_LENGTH,
        pattern=KEY_PATTERN,
        description="Retries with the same key and body return the first response.",
    ),
]


def _fingerprint(request: Request, body: bytes) -> str:
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.url.path.encode(), canonical):
        digest.update(part + b"\0")
    return digest.hexdigest()


def _key(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not re.fullmatch(KEY_PATTERN, key):
        raise BadRequest(f"{HEADER} must be 1-{MAX_KEY_LENGTH} visible ASCII characters.")
    return key


async def idempotent(
    request: Request,
    session: AsyncSession,
    user_id: int,
    status_code: int,
    produce: Callable[[], Awaitable[BaseModel]],
    headers: Callable[[bytes], dict[str, str]] | None = None,
) -> Response:
    """Run ``produce`` once per (user, key); retries get the stored response."""
    key = _key(request)
    if key is None:
        model = await produce()
        return _respond(status_code, model.model_dump_json().encode(), headers)
    fingerprint = _fingerprint(request, await request.body())
    await session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.user_id == user_id,
            IdempotencyRecord.key == key,
            IdempotencyRecord.created_at < utcnow() - TTL,
        )
    )
    values = {"user_id": user_id, "key": key, "fingerprint": fingerprint}
    if not await insert_ignore(session, IdempotencyRecord, values, ["user_id", "key"]):
        return await _replay(session, user_id, key, fingerprint, headers)
    model = await produce()
    body = model.model_dump_json().encode()
    record = await session.get(IdempotencyRecord, (user_id, key))
    assert record is not None
    record.status_code = status_code
    record.response_body = body.decode()
    await session.flush()
    return _respond(status_code, body, headers)


async def _replay(
    session: AsyncSession,
    user_id: int,
    key: str,
    fingerprint: str,
    headers: Callable[[bytes], dict[str, str]] | None,
) -> Response:
    stmt = (
        select(IdempotencyRecord)
        .where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
        .execution_options(populate_existing=True)
    )
    record = (await session.execute(stmt)).scalar_one_or_none()
    if record is None or record.status_code is None or record.response_body is None:
        raise Conflict("A request with this Idempotency-Key is still in progress; retry.")
    if record.fingerprint != fingerprint:
        raise ValidationFailed(f"This {HEADER} was used with a different request; use a new key.")
    body = record.response_body.encode()
    response = Response(
        content=body,
        status_code=record.status_code,
        media_type="application/json",
        headers=headers(body) if headers else None,
    )
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _respond(
    status_code: int, body: bytes, headers: Callable[[bytes], dict[str, str]] | None
) -> Response:
    return Response(
        content=body,
        status_code=status_code,
        media_type="application/json",
        headers=headers(body) if headers else None,
    )
