"""Reports: users flag posts, comments and accounts; moderators work the queue (on SQLite and
PostgreSQL, through the HTTP API)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
from sqlalchemy import func, select

from tests.support.api import SignedIn, assert_problem, login, make_admin, sign_up
from tests.support.events import applied
from tidings.core.container import Container
from tidings.events.models import OutboxMessage
from tidings.notifications import service as notifications
from tidings.notifications.consumers import CONSUMER
from tidings.notifications.models import NotificationGroup
from tidings.reports.models import Report

Json = dict[str, Any]
QUEUE = "/api/v1/moderation/reports"
URL = "/api/v1/notifications"


async def _post(client: httpx2.AsyncClient, user: SignedIn, **body: Any) -> str:
    response = await client.post(
        "/api/v1/posts", json={"text": "a post", **body}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _comment(client: httpx2.AsyncClient, user: SignedIn, post_id: str) -> str:
    response = await client.post(
        f"/api/v1/posts/{post_id}/comments", json={"text": "a comment"}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _report(client: httpx2.AsyncClient, user: SignedIn, **body: Any) -> httpx2.Response:
    return await client.post("/api/v1/reports", json=body, headers=user.headers)


async def _moderator(client: httpx2.AsyncClient, container: Container) -> SignedIn:
    await make_admin(container, "the_admin")
    admin = await login(client, "the_admin")
    mod = await sign_up(client, "the_mod")
    promoted = await client.patch(
        "/api/v1/admin/users/the_mod", json={"role": "moderator"}, headers=admin.headers
    )
    assert promoted.status_code == 200, promoted.text
    return mod


async def _count(container: Container) -> int:
    async with container.db.unit_of_work(write=False) as session:
        return int((await session.execute(select(func.count()).select_from(Report))).scalar_one())


async def test_a_report_walks_from_a_user_to_a_moderator(
    client: httpx2.AsyncClient, container: Container
) -> None:
    author = await sign_up(client, "author")
    reader = await sign_up(client, "reader")
    mod = await _moderator(client, container)
    post_id = await _post(client, author)
    comment_id = await _comment(client, author, post_id)

    made = await _report(client, reader, post_id=post_id, reason="spam", note="  buy now  ")
    assert made.status_code == 201, made.text
    report = made.json()
    assert report["target_type"] == "post"
    assert report["target_id"] == post_id
    assert report["reason"] == "spam"
    assert report["note"] == "buy now"
    assert report["status"] == "open"
    assert "reporter_id" not in report  # the reporter's view carries no moderation fields
    on_comment = await _report(client, reader, comment_id=comment_id, reason="harassment")
    assert on_comment.status_code == 201, on_comment.text
    on_user = await _report(client, reader, username="author", reason="impersonation")
    assert on_user.status_code == 201, on_user.text
    assert on_user.json()["target_id"] == author.user_id

    queue = await client.get(QUEUE, params={"status": "open"}, headers=mod.headers)
    assert queue.status_code == 200, queue.text
    listed = queue.json()["data"]
    assert [r["target_type"] for r in listed] == ["user", "comment", "post"]  # newest first
    assert {r["reporter_id"] for r in listed} == {reader.user_id}
    assert {r["target_owner_id"] for r in listed} == {author.user_id}
    only_posts = await client.get(QUEUE, params={"target_type": "post"}, headers=mod.headers)
    assert [r["id"] for r in only_posts.json()["data"]] == [report["id"]]
    by_target = await client.get(QUEUE, params={"target_id": post_id}, headers=mod.headers)
    assert [r["id"] for r in by_target.json()["data"]] == [report["id"]]

    decided = await client.patch(
        f"{QUEUE}/{report['id']}",
        json={"status": "resolved", "resolution_note": "deleted"},
        headers=mod.headers,
    )
    assert decided.status_code == 200, decided.text
    closed = decided.json()
    assert closed["status"] == "resolved"
    assert closed["resolved_by_id"] == mod.user_id
    assert closed["resolution_note"] == "deleted"
    assert closed["resolved_at"] is not None
    again = await client.patch(
        f"{QUEUE}/{report['id']}", json={"status": "dismissed"}, headers=mod.headers
    )
    assert assert_problem(again, 409)["detail"] == "This report is already resolved."
    still_open = await client.get(QUEUE, params={"status": "open"}, headers=mod.headers)
    assert report["id"] not in [r["id"] for r in still_open.json()["data"]]

    await make_admin(container, "auditor")
    auditor = await login(client, "auditor")
    trail = await client.get(
        "/api/v1/admin/audit-events", params={"action": "report:resolved"}, headers=auditor.headers
    )
    [event] = trail.json()["data"]
    assert event["actor_id"] == mod.user_id
    assert event["target_id"] == report["id"]
    assert event["details"] == {"reported_type": "post", "reported_id": post_id}

    # each report and each decision left an event for webhooks, in its own transaction
    async with container.db.unit_of_work(write=False) as session:
        rows = await session.execute(
            select(OutboxMessage.event_type, OutboxMessage.payload)
            .where(OutboxMessage.event_type.like("report.%"))
            .order_by(OutboxMessage.id)
        )
        events = [(kind, payload) for kind, payload in rows]
    assert [kind for kind, _ in events] == ["report.created"] * 3 + ["report.closed"]
    assert events[0][1] == {
        "report_id": report["id"],
        "user_id": reader.user_id,
        "target_type": "post",
        "target_id": post_id,
        "reason": "spam",
    }
    assert events[3][1] == {
        "report_id": report["id"],
        "user_id": mod.user_id,
        "target_type": "post",
        "target_id": post_id,
        "status": "resolved",
    }


async def test_one_open_report_per_reporter_and_target(
    client: httpx2.AsyncClient, container: Container
) -> None:
    author = await sign_up(client, "author")
    reader = await sign_up(client, "reader")
    other = await sign_up(client, "other")
    mod = await _moderator(client, container)
    post_id = await _post(client, author)
    first = await _report(client, reader, post_id=post_id, reason="spam")
    assert first.status_code == 201
    twice = await _report(client, reader, post_id=post_id, reason="hate")
    assert "already reported" in assert_problem(twice, 409)["detail"]
    # someone else may report it too; and once closed, the reader may report it again
    assert (await _report(client, other, post_id=post_id, reason="spam")).status_code == 201
    dismissed = await client.patch(
        f"{QUEUE}/{first.json()['id']}", json={"status": "dismissed"}, headers=mod.headers
    )
    assert dismissed.status_code == 200, dismissed.text
    assert (await _report(client, reader, post_id=post_id, reason="hate")).status_code == 201
    assert await _count(container) == 3


async def test_concurrent_duplicates_make_one_report(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """Racing duplicates: one 201, the rest 409 (the partial unique index), never a 500."""
    author = await sign_up(client, "author")
    reader = await sign_up(client, "reader")
    post_id = await _post(client, author)
    answers = await asyncio.gather(
        *(_report(client, reader, post_id=post_id, reason="spam") for _ in range(6))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 1, codes
    assert set(codes) <= {201, 409}, [a.text for a in answers]
    assert await _count(container) == 1


async def test_an_idempotent_retry_returns_the_first_report(
    client: httpx2.AsyncClient, container: Container
) -> None:
    author = await sign_up(client, "author")
    reader = await sign_up(client, "reader")
    post_id = await _post(client, author)
    headers = {**reader.headers, "Idempotency-Key": "report-1"}
    body = {"post_id": post_id, "reason": "spam"}
    first = await client.post("/api/v1/reports", json=body, headers=headers)
    retry = await client.post("/api/v1/reports", json=body, headers=headers)
    assert first.status_code == retry.status_code == 201, retry.text
    assert retry.json() == first.json()
    assert await _count(container) == 1


async def test_what_cannot_be_reported(client: httpx2.AsyncClient, container: Container) -> None:
    author = await sign_up(client, "author")
    reader = await sign_up(client, "reader")
    private = await _post(client, author, visibility="private")
    mine = await _post(client, reader)
    gone = await _post(client, author)
    deleted = await client.delete(f"/api/v1/posts/{gone}", headers=author.headers)
    assert deleted.status_code == 204
    cases: list[tuple[Json, int]] = [
        ({"post_id": private, "reason": "spam"}, 404),  # invisible: like a missing post
        ({"post_id": gone, "reason": "spam"}, 404),
        ({"post_id": "99999999999", "reason": "spam"}, 404),
        ({"comment_id": "99999999999", "reason": "spam"}, 404),
        ({"username": "nobody_here", "reason": "spam"}, 404),
        ({"post_id": mine, "reason": "spam"}, 422),  # your own
        ({"username": "reader", "reason": "spam"}, 422),  # yourself
        ({"reason": "spam"}, 422),  # no target
        ({"post_id": mine, "username": "author", "reason": "spam"}, 422),  # two targets
        ({"post_id": None, "username": "author", "reason": "spam"}, 422),  # null is not absent
        ({"post_id": private, "reason": "because"}, 422),  # unknown reason
        ({"post_id": private, "reason": "spam", "note": "x" * 1001}, 422),
        ({"post_id": private, "reason": "spam", "status": "resolved"}, 422),  # mass assignment
        ({"post_id": "12ab", "reason": "spam"}, 422),
        ({"username": "bad name!", "reason": "spam"}, 422),
    ]
    for body, status in cases:
        response = await _report(client, reader, **body)
        assert_problem(response, status)
    anonymous = await client.post("/api/v1/reports", json={"username": "author", "reason": "spam"})
    assert_problem(anonymous, 401)
    assert await _count(container) == 0


async def test_only_moderators_see_and_close_reports(
    client: httpx2.AsyncClient, container: Container
) -> None:
    author = await sign_up(client, "author")
    reader = await sign_up(client, "reader")
    mod = await _moderator(client, container)
    post_id = await _post(client, author)
    report_id = (await _report(client, reader, post_id=post_id, reason="spam")).json()["id"]
    assert_problem(await client.get(QUEUE, headers=reader.headers), 403)
    refused = await client.patch(
        f"{QUEUE}/{report_id}", json={"status": "dismissed"}, headers=author.headers
    )
    assert_problem(refused, 403)
    bad = [
        ({"status": "open"}, 422),
        ({"status": "resolved", "resolved_by_id": author.user_id}, 422),
        ({"status": "maybe"}, 422),
    ]
    for body, status in bad:
        assert_problem(
            await client.patch(f"{QUEUE}/{report_id}", json=body, headers=mod.headers), status
        )
    missing = await client.patch(
        f"{QUEUE}/99999999999", json={"status": "dismissed"}, headers=mod.headers
    )
    assert_problem(missing, 404)
    queue = await client.get(QUEUE, headers=mod.headers)
    [listed] = queue.json()["data"]
    assert listed["status"] == "open"  # nothing above changed it
    for params in ({"status": "closed"}, {"target_id": "99999999999999999999"}):
        assert_problem(await client.get(QUEUE, params=params, headers=mod.headers), 422)
    huge = await client.get(QUEUE, params={"target_id": "9999999999999999999"}, headers=mod.headers)
    assert_problem(huge, 422)


async def test_the_queue_pages_by_cursor(client: httpx2.AsyncClient, container: Container) -> None:
    mod = await _moderator(client, container)
    author = await sign_up(client, "author")
    readers = [await sign_up(client, f"reader{i}") for i in range(5)]
    post_id = await _post(client, author)
    made = [
        (await _report(client, reader, post_id=post_id, reason="spam")).json()["id"]
        for reader in readers
    ]
    seen: list[str] = []
    params: dict[str, str] = {"limit": "2"}
    for _ in range(5):  # bounded
        page = await client.get(QUEUE, params=params, headers=mod.headers)
        assert page.status_code == 200, page.text
        seen += [r["id"] for r in page.json()["data"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
        assert 'rel="next"' in page.headers["link"]
        params = {"limit": "2", "cursor": cursor}
    assert seen == list(reversed(made))


async def test_blocking_someone_does_not_stop_reporting_them(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """Blocking is what people do first: the blocker may still report the blocked user's posts,
    comments and account. Someone who blocks the reporter is hidden from them (404)."""
    author = await sign_up(client, "author")
    reader = await sign_up(client, "reader")
    host = await sign_up(client, "host")
    post_id = await _post(client, author)
    thread = await _post(client, host)
    comment_id = await _comment(client, author, thread)
    blocked = await client.put("/api/v1/users/author/block", headers=reader.headers)
    assert blocked.status_code == 200, blocked.text
    for body in ({"post_id": post_id}, {"comment_id": comment_id}, {"username": "author"}):
        made = await _report(client, reader, reason="harassment", **body)
        assert made.status_code == 201, (body, made.text)

    other = await sign_up(client, "other")
    blocker = await client.put("/api/v1/users/other/block", headers=author.headers)
    assert blocker.status_code == 200, blocker.text
    for body in ({"post_id": post_id}, {"comment_id": comment_id}, {"username": "author"}):
        assert_problem(await _report(client, other, reason="spam", **body), 404)
    assert await _count(container) == 3


async def test_hidden_targets_are_not_found(
    client: httpx2.AsyncClient, container: Container
) -> None:
    author = await sign_up(client, "author")
    reader = await sign_up(client, "reader")
    await make_admin(container, "the_admin")
    admin = await login(client, "the_admin")
    private = await _post(client, author, visibility="private")
    under_private = await _comment(client, author, private)
    followers_only = await _post(client, author, visibility="followers")
    public = await _post(client, author)
    comment_id = await _comment(client, author, public)
    for body in ({"comment_id": under_private}, {"post_id": followers_only}):
        assert_problem(await _report(client, reader, reason="spam", **body), 404)
    suspended = await client.patch(
        "/api/v1/admin/users/author", json={"suspended": True}, headers=admin.headers
    )
    assert suspended.status_code == 200, suspended.text
    for body in ({"post_id": public}, {"comment_id": comment_id}, {"username": "author"}):
        assert_problem(await _report(client, reader, reason="spam", **body), 404)
    # moderators see everything, so they may report it (for another moderator to decide)
    assert (await _report(client, admin, post_id=private, reason="other")).status_code == 201
    assert await _count(container) == 1


async def test_a_report_about_a_moderator_is_for_someone_else(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """The moderator it is about may not close it and does not learn who made it."""
    reader = await sign_up(client, "reader")
    mod = await _moderator(client, container)
    admin = await login(client, "the_admin")
    post_id = await _post(client, mod)
    made = await _report(client, reader, post_id=post_id, reason="hate")
    assert made.status_code == 201, made.text
    report_id = made.json()["id"]
    [seen_by_mod] = (await client.get(QUEUE, headers=mod.headers)).json()["data"]
    assert seen_by_mod["reporter_id"] is None
    [seen_by_admin] = (await client.get(QUEUE, headers=admin.headers)).json()["data"]
    assert seen_by_admin["reporter_id"] == reader.user_id
    own = await client.patch(
        f"{QUEUE}/{report_id}", json={"status": "dismissed"}, headers=mod.headers
    )
    assert_problem(own, 403)
    decided = await client.patch(
        f"{QUEUE}/{report_id}", json={"status": "resolved"}, headers=admin.headers
    )
    assert decided.status_code == 200, decided.text


async def test_the_schema_says_exactly_one_target(client: httpx2.AsyncClient) -> None:
    """What the validator enforces is in the OpenAPI document too (schema-driven clients and
    tests then build only bodies the API accepts)."""
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]["ReportCreate"]
    assert schema["oneOf"] == [
        {"required": ["post_id"]},
        {"required": ["comment_id"]},
        {"required": ["username"]},
    ]
    assert schema["additionalProperties"] is False
    for name in ("post_id", "comment_id", "username"):
        assert "anyOf" not in schema["properties"][name]  # no null


async def test_the_queue_summary_counts_open_reports_per_kind(
    client: httpx2.AsyncClient, container: Container
) -> None:
    mod = await _moderator(client, container)
    summary = "/api/v1/moderation/summary"
    empty = await client.get(summary, headers=mod.headers)
    assert empty.json() == {
        "open": 0,
        "open_by_target_type": {"post": 0, "comment": 0, "user": 0},
        "oldest_open_at": None,
    }
    author = await sign_up(client, "author")
    readers = [await sign_up(client, f"reader{i}") for i in range(3)]
    post_id = await _post(client, author)
    comment_id = await _comment(client, author, post_id)
    made = [
        (await _report(client, readers[0], post_id=post_id, reason="spam")).json(),
        (await _report(client, readers[1], post_id=post_id, reason="spam")).json(),
        (await _report(client, readers[2], comment_id=comment_id, reason="hate")).json(),
        (await _report(client, readers[0], username="author", reason="impersonation")).json(),
    ]
    closed = await client.patch(
        f"{QUEUE}/{made[1]['id']}", json={"status": "dismissed"}, headers=mod.headers
    )
    assert closed.status_code == 200, closed.text
    now = await client.get(summary, headers=mod.headers)
    assert now.status_code == 200, now.text
    body = now.json()
    assert body["open"] == 3
    assert body["open_by_target_type"] == {"post": 1, "comment": 1, "user": 1}
    assert body["oldest_open_at"] == made[0]["created_at"]
    assert_problem(await client.get(summary, headers=readers[0].headers), 403)
    assert_problem(await client.get(summary), 401)


# --- moderators hear of new reports ------------------------------------------------------------


async def _report_notices(client: httpx2.AsyncClient, user: SignedIn) -> list[Json]:
    response = await client.get(
        "/api/v1/notifications", params={"kinds": "report", "limit": 100}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    data: list[Json] = response.json()["data"]
    return data


async def _reports_applied(container: Container) -> None:
    """Every report.created event is applied by the notifications consumer (so a missing
    notice means none was made, not that it is late)."""
    await applied(container, CONSUMER, ["report.created"])


async def test_moderators_and_admins_are_told_of_new_reports_in_one_counted_notice(
    client: httpx2.AsyncClient, container: Container
) -> None:
    author = await sign_up(client, "author")
    reader = await sign_up(client, "reader")
    other = await sign_up(client, "other")
    mod = await _moderator(client, container)  # also makes the_admin
    admin = await login(client, "the_admin")
    post_id = await _post(client, author)

    assert (await _report(client, reader, post_id=post_id, reason="spam")).status_code == 201
    second = await _report(client, other, username="author", reason="impersonation")
    assert second.status_code == 201, second.text
    await _reports_applied(container)

    for staff in (mod, admin):
        [notice] = await _report_notices(client, staff)
        assert notice["kind"] == "report"
        assert notice["actor_count"] == 2
        assert notice["actors"] == []  # names nobody: the queue says who reported what
        assert notice["summary"] == "2 new reports to review"
        assert notice["data"] == {"latest_report_id": second.json()["id"]}
        assert notice["read"] is False
    for user in (author, reader, other):  # not staff: nothing
        assert await _report_notices(client, user) == []

    # read, then a new report opens a new notice; the read one stays as history
    marked = await client.post("/api/v1/notifications/read", json={}, headers=mod.headers)
    assert marked.status_code == 200, marked.text
    third = await _report(client, reader, username="other", reason="spam")
    assert third.status_code == 201, third.text
    await _reports_applied(container)
    fresh, old = await _report_notices(client, mod)
    assert (fresh["summary"], fresh["read"]) == ("1 new report to review", False)
    assert (old["actor_count"], old["read"]) == (2, True)
    [admins] = await _report_notices(client, admin)  # unread: the same notice counts on
    assert admins["summary"] == "3 new reports to review"

    # demoted: report notices are no longer shown or counted (promoted again, they are)
    async def unread(user: SignedIn) -> int:
        response = await client.get("/api/v1/notifications/unread-count", headers=user.headers)
        assert response.status_code == 200, response.text
        count: int = response.json()["count"]
        return count

    assert await unread(mod) == 1
    for role, shown in (("user", 0), ("moderator", 2)):
        changed = await client.patch(
            "/api/v1/admin/users/the_mod", json={"role": role}, headers=admin.headers
        )
        assert changed.status_code == 200, changed.text
        assert len(await _report_notices(client, mod)) == shown
        assert len((await client.get(URL, headers=mod.headers)).json()["data"]) == shown
        assert await unread(mod) == min(shown, 1)


async def test_no_report_notice_for_the_reporter_the_reported_or_a_closed_report(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """Staff who file a report, or whose own content is reported, are not told of it (another
    must decide it); a report closed before its event is applied tells nobody; suspended staff
    are not told."""
    reader = await sign_up(client, "reader")
    mod = await _moderator(client, container)
    admin = await login(client, "the_admin")
    mod_post = await _post(client, mod)

    about_mod = await _report(client, reader, post_id=mod_post, reason="spam")
    assert about_mod.status_code == 201, about_mod.text
    by_mod = await _report(client, mod, username="reader", reason="spam")
    assert by_mod.status_code == 201, by_mod.text
    await _reports_applied(container)
    assert await _report_notices(client, mod) == []
    [notice] = await _report_notices(client, admin)
    assert notice["actor_count"] == 2

    # applied again after the report was closed (a late delivery): nobody is told
    closed = await client.patch(
        f"{QUEUE}/{by_mod.json()['id']}", json={"status": "dismissed"}, headers=admin.headers
    )
    assert closed.status_code == 200, closed.text
    async with container.db.unit_of_work() as session:
        report_id = int(by_mod.json()["id"])
        told = await notifications.notify_moderators(session, report_id, second_factor=False)
    assert told == 0
    [notice] = await _report_notices(client, admin)
    assert notice["actor_count"] == 2

    # a suspended moderator is not told of what they cannot act on
    suspended = await client.patch(
        "/api/v1/admin/users/the_mod", json={"suspended": True}, headers=admin.headers
    )
    assert suspended.status_code == 200, suspended.text
    author = await sign_up(client, "author")
    later = await _report(client, reader, post_id=await _post(client, author), reason="spam")
    assert later.status_code == 201, later.text
    await _reports_applied(container)
    [notice] = await _report_notices(client, admin)
    assert notice["actor_count"] == 3
    async with container.db.unit_of_work(write=False) as session:
        groups = await session.execute(
            select(NotificationGroup.recipient_id).where(NotificationGroup.kind == "report")
        )
        assert set(groups.scalars()) == {int(admin.user_id)}
