"""Time to visible, through the HTTP API of the running server (which relays and fans out in
process with the embedded broker): an author composes a post; from its 201, one of their
followers (a benchmark client) polls ``GET /api/v1/feed?limit=20`` every :data:`POLL` seconds
until the post is on the page, for at most :data:`TIMEOUT` seconds.

Authors: the most-followed account, and the benchmark client whose follower count is nearest
10,000 among those still fanned out (``TIDINGS_FANOUT_THRESHOLD``): at small scale nobody has
10,000 followers, and the report names the count actually used. Each is measured
:data:`TRIALS` times; the follower reads their feed once first (their timeline exists, as an
active user's does). The relay and the consumers are left to catch up (at most :data:`DRAIN`
seconds) first, so the figure is for a quiet system rather than the backlog of the load
phases.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import asyncpg
import httpx2

POLL = 0.02
TIMEOUT = 10.0
TRIALS = 3
# The load phases leave thousands of likes and follows for one worker process to apply (about
# 10 ms of its CPU each); 30 s was not always enough, and a probe then waited behind them.
DRAIN = 120.0
SETTLE = 30.0  # after each level's mix: the feeds consumer only
NEAR = 10_000


QUIET = 3  # polls in a row without a new applied event: the consumers are idle


async def _drain(conn: asyncpg.Connection) -> int:
    """Wait until the relay has picked up every event of the load phases and the consumers
    have applied them (no new ``processed_events`` row for :data:`QUIET` polls in a row), at
    most :data:`DRAIN` seconds; returns how many events were waiting for the relay at the
    start. (A relayed row keeps ``published_at`` empty until the relay looks again after the
    redelivery timeout, so only never-relayed rows, ``attempts = 0``, say the relay is behind;
    the consumers' queue is only seen through what they apply.)"""
    waiting = "SELECT count(*) FROM outbox WHERE published_at IS NULL AND attempts = 0"
    applied = "SELECT count(*) FROM processed_events WHERE processed_at >= $1"
    since = await conn.fetchval("SELECT now()")
    first = int(await conn.fetchval(waiting))
    last, quiet = -1, 0
    deadline = time.monotonic() + DRAIN
    while quiet < QUIET and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        done = int(await conn.fetchval(applied, since))
        idle = done == last and not int(await conn.fetchval(waiting))
        quiet = quiet + 1 if idle else 0
        last = done
    return first


FEED_EVENTS = ("post.created", "post.updated", "post.shared", "user.followed")


async def settle(dsn: str, after: int = 0, within: float = SETTLE) -> float:
    """Wait (at most ``within`` s) until the relay has picked up every event newer than
    ``after`` (this run's) and the feeds consumer has applied every feed event among them, so
    the next phase does not share the CPUs with the previous one's fan-out; returns the
    seconds waited."""
    started = time.monotonic()
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        query = """
            SELECT count(*) FROM outbox o
            WHERE o.id > $2 AND o.event_type = ANY($1::text[]) AND NOT EXISTS (
                SELECT 1 FROM processed_events p WHERE p.consumer = 'feeds' AND p.event_id = o.id
            )"""
        while time.monotonic() - started < within:
            if not int(await conn.fetchval(query, list(FEED_EVENTS), after)):
                break
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    return time.monotonic() - started


async def _authors(
    conn: asyncpg.Connection, clients: dict[int, str], threshold: int
) -> list[tuple[str, asyncpg.Record]]:
    ids = list(clients)
    most = await conn.fetchrow(
        "SELECT id, username, follower_count FROM users ORDER BY follower_count DESC, id LIMIT 1"
    )
    chosen: list[tuple[str, asyncpg.Record]] = []
    if most is not None and most["id"] in clients:
        chosen.append(("most_followed", most))
    near = await conn.fetchrow(
        "SELECT id, username, follower_count FROM users WHERE id = ANY($1::bigint[]) "
        "AND follower_count <= $2 AND id <> $3 AND follower_count > 0 "
        "ORDER BY abs(follower_count - $4), id LIMIT 1",
        ids,
        threshold,
        most["id"] if most is not None else 0,
        NEAR,
    )
    if near is not None:
        chosen.append(("near_10k", near))
    return chosen


async def _follower(conn: asyncpg.Connection, author: int, clients: dict[int, str]) -> int | None:
    found = await conn.fetchval(
        "SELECT follower_id FROM follows WHERE followee_id = $1 AND follower_id <> $1 "
        "AND follower_id = ANY($2::bigint[]) ORDER BY follower_id LIMIT 1",
        author,
        list(clients),
    )
    return int(found) if found is not None else None


async def _probe(
    client: httpx2.AsyncClient, author_token: str, follower_token: str, trial: int
) -> tuple[float | None, str | None]:
    """Seconds from the 201 to the post on the follower's first page (None: not within
    TIMEOUT), and an error when something failed."""
    posted = await client.post(
        "/api/v1/posts",
        json={"text": f"visibility probe {trial}"},
        headers={"Authorization": f"Bearer {author_token}"},
    )
    created = time.perf_counter()
    if posted.status_code != 201:
        return None, f"compose {posted.status_code}: {posted.text[:200]}"
    post_id = str(posted.json()["id"])
    auth = {"Authorization": f"Bearer {follower_token}"}
    for _ in range(int(TIMEOUT / POLL) + 1):
        page = await client.get("/api/v1/feed?limit=20", headers=auth)
        if page.status_code != 200:
            return None, f"feed {page.status_code}: {page.text[:200]}"
        if any(str(post["id"]) == post_id for post in page.json()["data"]):
            return time.perf_counter() - created, None
        if time.perf_counter() - created > TIMEOUT:
            break
        await asyncio.sleep(POLL)
    return None, None


async def time_to_visible(
    base_url: str, dsn: str, clients: dict[int, str], threshold: int, trials: int = TRIALS
) -> dict[str, Any]:
    """``clients``: user id -> access token of the benchmark's clients."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        backlog = await _drain(conn)
        cases = []
        for name, row in await _authors(conn, clients, threshold):
            follower = await _follower(conn, int(row["id"]), clients)
            username = None
            if follower is not None:
                username = await conn.fetchval("SELECT username FROM users WHERE id = $1", follower)
            cases.append((name, row, follower, username))
    finally:
        await conn.close()
    result: dict[str, Any] = {
        "outbox_backlog": backlog,
        "poll_s": POLL,
        "timeout_s": TIMEOUT,
        "threshold": threshold,
    }
    async with httpx2.AsyncClient(base_url=base_url, timeout=30) as client:
        for name, row, follower, username in cases:
            case: dict[str, Any] = {
                "author": row["username"],
                "followers": int(row["follower_count"]),
                "fanned_out": int(row["follower_count"]) <= threshold,
            }
            result[name] = case
            if follower is None:
                case["skipped"] = "no benchmark client follows this author"
                continue
            case["follower"] = username
            warm = await client.get(
                "/api/v1/feed?limit=20", headers={"Authorization": f"Bearer {clients[follower]}"}
            )
            warm.raise_for_status()
            seconds: list[float | None] = []
            for trial in range(trials):
                visible, error = await _probe(
                    client, clients[int(row["id"])], clients[follower], trial
                )
                if error:
                    case.setdefault("errors", []).append(error)
                seconds.append(round(visible, 3) if visible is not None else None)
            case["trials_s"] = seconds
            done = [s for s in seconds if s is not None]
            case["max_s"] = max(done) if len(done) == len(seconds) and done else None
            case["median_s"] = statistics.median(done) if done else None
    return result
