"""The webhooks API: admin-only subscriptions, a secret shown once, rotation, the delivery
history and redelivery — with real deliveries to a local receiver through the embedded relay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import make_settings
from tests.support.api import SignedIn, assert_problem, login, make_admin, sign_up
from tests.support.waiting import eventually
from tests.support.webhook_receiver import Receiver, Reply
from tidings.core.container import Container
from tidings.settings import Settings

BASE = "/api/v1/webhooks"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(
        tmp_path / "data",
        database_url,
        webhook_allowed_hosts=["127.0.0.1/32"],
        webhook_poll_seconds=0.05,
        relay_poll_seconds=0.05,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as running:
        yield running


async def _admin(client: httpx2.AsyncClient, container: Container) -> SignedIn:
    await make_admin(container, "hookboss")
    return await login(client, "hookboss")


async def _create(client: httpx2.AsyncClient, admin: SignedIn, **body: Any) -> dict[str, Any]:
    body = {"url": "https://hooks.example.com/in", "event_types": ["post.created"], **body}
    response = await client.post(BASE, json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _audit_actions(client: httpx2.AsyncClient, admin: SignedIn) -> list[str]:
    response = await client.get(
        "/api/v1/admin/audit-events", params={"target_type": "webhook"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    return [event["action"] for event in response.json()["data"]]


async def test_crud_and_the_secret_is_shown_once(
    client: httpx2.AsyncClient, container: Container
) -> None:
    admin = await _admin(client, container)
    response = await client.post(
        BASE,
        json={
            "url": "https://hooks.example.com/in",
            "event_types": ["post.created", "post.liked", "post.created"],
            "description": "analytics",
        },
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    secret = created["secret"]
    assert secret.startswith("whsec_")
    Webhook(secret)  # the Standard Webhooks format
    assert response.headers["Location"] == f"{BASE}/{created['id']}"
    assert created["event_types"] == ["post.created", "post.liked"]
    assert created["enabled"] is True
    assert created["owner_id"] == admin.user_id
    assert created["description"] == "analytics"

    one = await client.get(f"{BASE}/{created['id']}", headers=admin.headers)
    assert one.status_code == 200
    assert "secret" not in one.json()
    assert secret not in one.text
    assert secret[6:] not in one.text
    listed = await client.get(BASE, headers=admin.headers)
    assert [w["id"] for w in listed.json()["data"]] == [created["id"]]
    assert secret[6:] not in listed.text

    patched = await client.patch(
        f"{BASE}/{created['id']}",
        json={"event_types": ["*"], "enabled": False, "description": "all"},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["event_types"], body["enabled"], body["description"]) == (["*"], False, "all")
    assert body["disabled_reason"] == "disabled by an admin"
    assert "secret" not in body
    enabled = await client.patch(
        f"{BASE}/{created['id']}", json={"enabled": True}, headers=admin.headers
    )
    assert enabled.json()["disabled_reason"] is None

    deleted = await client.delete(f"{BASE}/{created['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    assert_problem(await client.get(f"{BASE}/{created['id']}", headers=admin.headers), 404)
    assert_problem(await client.delete(f"{BASE}/{created['id']}", headers=admin.headers), 404)

    actions = await _audit_actions(client, admin)
    assert actions.count("webhook:updated") == 2
    assert {"webhook:created", "webhook:deleted"} <= set(actions)


async def test_bad_input_is_rejected(client: httpx2.AsyncClient, container: Container) -> None:
    admin = await _admin(client, container)
    good = {"url": "https://hooks.example.com/in", "event_types": ["post.created"]}
    bad_bodies: list[tuple[dict[str, Any], str]] = [
        ({**good, "url": "ftp://hooks.example.com/in"}, "url"),
        ({**good, "url": "javascript:alert(1)"}, "url"),
        ({**good, "url": "file:///etc/passwd"}, "url"),
        ({**good, "url": "https://"}, "url"),
        ({**good, "url": "not a url"}, "url"),
        ({**good, "url": "https://user:pw@hooks.example.com/"}, "url"),
        ({**good, "url": "https://hooks.example.com/" + "a" * 2048}, "url"),
        ({**good, "url": "http://169.254.169.254/latest/meta-data"}, "url"),
        ({**good, "url": "http://10.0.0.5/hook"}, "url"),
        ({**good, "url": "http://[::ffff:a9fe:a9fe]/hook"}, "url"),
        ({**good, "event_types": ["post.exploded"]}, "event_types"),
        ({**good, "event_types": []}, "event_types"),
        ({**good, "event_types": "post.created"}, "event_types"),
        ({**good, "enabled": "maybe"}, "enabled"),
        ({**good, "description": "x" * 501}, "description"),
        ({**good, "secret": "whsec_mine"}, "secret"),
        ({"event_types": ["*"]}, "url"),
    ]
    for body, field in bad_bodies:
        response = await client.post(BASE, json=body, headers=admin.headers)
        problem = assert_problem(response, 422)
        assert any(field in error["loc"] for error in problem["errors"]), (body, problem)

    created = await _create(client, admin)
    for patch in ({"url": None}, {"event_types": ["nope"]}, {"owner_id": "1"}, {"url": "ftp://x"}):
        response = await client.patch(f"{BASE}/{created['id']}", json=patch, headers=admin.headers)
        assert_problem(response, 422)
    assert_problem(await client.get(f"{BASE}/12x", headers=admin.headers), 422)
    assert_problem(await client.get(f"{BASE}/999", headers=admin.headers), 404)


async def test_only_admins_may_touch_webhooks(
    client: httpx2.AsyncClient, container: Container
) -> None:
    admin = await _admin(client, container)
    created = await _create(client, admin)
    user = await sign_up(client, "plainuser")
    one = f"{BASE}/{created['id']}"
    calls = [
        ("POST", BASE, {"url": "https://x.example.com/", "event_types": ["*"]}),
        ("GET", BASE, None),
        ("GET", one, None),
        ("PATCH", one, {"enabled": False}),
        ("DELETE", one, None),
        ("POST", f"{one}/rotate-secret", None),
        ("GET", f"{one}/deliveries", None),
        ("POST", f"{one}/deliveries/1/redeliver", None),
    ]
    for method, url, body in calls:
        anonymous = await client.request(method, url, json=body)
        assert_problem(anonymous, 401)
        forbidden = await client.request(method, url, json=body, headers=user.headers)
        assert_problem(forbidden, 403)
    still = await client.get(one, headers=admin.headers)
    assert still.json()["enabled"] is True


async def test_rotate_secret_returns_the_new_secret_once(
    client: httpx2.AsyncClient, container: Container
) -> None:
    admin = await _admin(client, container)
    created = await _create(client, admin)
    rotated = await client.post(f"{BASE}/{created['id']}/rotate-secret", headers=admin.headers)
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["secret"].startswith("whsec_")
    assert body["secret"] != created["secret"]
    overlap_ends = datetime.fromisoformat(body["previous_secret_expires_at"])
    expected = datetime.now(UTC) + timedelta(hours=24)
    assert abs((overlap_ends - expected).total_seconds()) < 60
    assert body["secret_rotated_at"] is not None
    again = await client.get(f"{BASE}/{created['id']}", headers=admin.headers)
    assert body["secret"][6:] not in again.text
    assert "webhook:secret_rotated" in await _audit_actions(client, admin)
    missing = await client.post(f"{BASE}/12345/rotate-secret", headers=admin.headers)
    assert_problem(missing, 404)


async def _deliveries(
    client: httpx2.AsyncClient, admin: SignedIn, webhook_id: str, **params: str
) -> httpx2.Response:
    response = await client.get(
        f"{BASE}/{webhook_id}/deliveries", params=params, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    return response


async def test_events_are_delivered_listed_and_redelivered(
    client: httpx2.AsyncClient, container: Container, receiver: Receiver
) -> None:
    admin = await _admin(client, container)
    hook = await _create(client, admin, url=receiver.url("/posts"))
    follows = await _create(
        client, admin, url=receiver.url("/follows"), event_types=["user.followed"]
    )
    author = await sign_up(client, "writer")
    for n in range(3):
        post = await client.post("/api/v1/posts", json={"text": f"hi {n}"}, headers=author.headers)
        assert post.status_code == 201, post.text

    await receiver.wait_for(3, "/posts")
    for request in receiver.seen("/posts"):
        payload = Webhook(hook["secret"]).verify(request.body, request.headers)
        assert payload["type"] == "post.created"
        assert payload["data"]["user_id"] == author.user_id
    assert receiver.seen("/follows") == []

    async def all_recorded() -> bool:
        data = (await _deliveries(client, admin, hook["id"])).json()["data"]
        return len(data) == 3 and all(d["status"] == "delivered" for d in data)

    await eventually(all_recorded)
    first_page = await _deliveries(client, admin, hook["id"], limit="2")
    page = first_page.json()
    assert len(page["data"]) == 2
    assert page["next_cursor"]
    assert 'rel="next"' in first_page.headers["Link"]
    rest = await _deliveries(client, admin, hook["id"], limit="2", cursor=page["next_cursor"])
    assert len(rest.json()["data"]) == 1
    assert rest.json()["next_cursor"] is None
    delivery = page["data"][0]
    assert delivery["attempts"] == 1
    assert delivery["response_status"] == 200
    assert isinstance(delivery["latency_ms"], int)
    assert delivery["next_attempt_at"] is None
    assert delivery["last_error"] is None
    assert delivery["event_type"] == "post.created"
    assert delivery["message_id"] == f"msg_{delivery['event_id']}"
    assert (await _deliveries(client, admin, hook["id"], status="pending")).json()["data"] == []
    assert (await _deliveries(client, admin, follows["id"])).json()["data"] == []

    again = await client.post(
        f"{BASE}/{hook['id']}/deliveries/{delivery['id']}/redeliver", headers=admin.headers
    )
    assert again.status_code == 202, again.text
    assert (again.json()["status"], again.json()["attempts"]) == ("pending", 0)
    await receiver.wait_for(4, "/posts")
    repeat = receiver.seen("/posts")[-1]
    assert repeat.headers["webhook-id"] == delivery["message_id"]  # receivers can deduplicate
    Webhook(hook["secret"]).verify(repeat.body, repeat.headers)

    async def redelivered() -> bool:
        data = (await _deliveries(client, admin, hook["id"])).json()["data"]
        return any(d["id"] == delivery["id"] and d["status"] == "delivered" for d in data)

    await eventually(redelivered)


async def test_failures_show_in_the_history_and_redeliver_rules(
    client: httpx2.AsyncClient, container: Container, receiver: Receiver
) -> None:
    receiver.routes["/down"] = Reply(503, body=b"maintenance")
    admin = await _admin(client, container)
    hook = await _create(client, admin, url=receiver.url("/down"), event_types=["*"])
    other = await _create(client, admin)
    author = await sign_up(client, "writer2")
    await client.post("/api/v1/posts", json={"text": "hello"}, headers=author.headers)
    await receiver.wait_for(1, "/down")

    async def failed_once() -> bool:
        data = (await _deliveries(client, admin, hook["id"])).json()["data"]
        return bool(data) and data[0]["attempts"] == 1

    await eventually(failed_once)
    [delivery] = (await _deliveries(client, admin, hook["id"], status="pending")).json()["data"]
    assert delivery["response_status"] == 503
    assert delivery["last_error"] == "HTTP 503"
    assert delivery["response_excerpt"] == "maintenance"
    assert delivery["next_attempt_at"] is not None

    redeliver = f"{BASE}/{hook['id']}/deliveries/{delivery['id']}/redeliver"
    wrong_hook = f"{BASE}/{other['id']}/deliveries/{delivery['id']}/redeliver"
    assert_problem(await client.post(wrong_hook, headers=admin.headers), 404)
    assert_problem(
        await client.post(f"{BASE}/{hook['id']}/deliveries/42/redeliver", headers=admin.headers),
        404,
    )
    await client.patch(f"{BASE}/{hook['id']}", json={"enabled": False}, headers=admin.headers)
    assert_problem(await client.post(redeliver, headers=admin.headers), 409)
    bad_status = await client.get(
        f"{BASE}/{hook['id']}/deliveries", params={"status": "lost"}, headers=admin.headers
    )
    assert_problem(bad_status, 422)
    assert_problem(await client.get(f"{BASE}/777/deliveries", headers=admin.headers), 404)
