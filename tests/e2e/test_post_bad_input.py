"""Bad input on posts, likes and the graph: a problem+json 4xx and nothing written.

Every case snapshots row counts of the social tables (and the outbox) before and after, and the
target post's state for edits.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

from tests.support.api import SignedIn, assert_problem, sign_up
from tidings.core.container import Container
from tidings.events.models import IdempotencyRecord, OutboxMessage
from tidings.graph.models import Block, Follow, Mute
from tidings.posts.models import Like, Post, PostMention, PostTag

TABLES = {
    "posts": Post,
    "likes": Like,
    "follows": Follow,
    "blocks": Block,
    "mutes": Mute,
    "post_tags": PostTag,
    "post_mentions": PostMention,
    "outbox": OutboxMessage,
    "idempotency_keys": IdempotencyRecord,
}
MEDIA = {"url": "https://img.example/a.png", "type": "image", "alt_text": "a"}


async def snapshot(container: Container) -> dict[str, int]:
    counts = {}
    async with container.db.unit_of_work(write=False) as session:
        for name, model in TABLES.items():
            stmt = select(func.count()).select_from(model)
            counts[name] = int((await session.execute(stmt)).scalar_one())
        posts = (await session.execute(select(Post).order_by(Post.id))).scalars()
        for post in posts:
            counts[f"post {post.id} version"] = post.version
            counts[f"post {post.id} likes"] = post.like_count
            counts[f"post {post.id} deleted"] = int(post.deleted_at is not None)
    return counts


@dataclass
class Scene:
    alice: SignedIn
    bob: SignedIn
    public_id: str
    followers_id: str
    private_id: str


@pytest.fixture
async def scene(client: httpx2.AsyncClient) -> Scene:
    alice = await sign_up(client, "alice")
    bob = await sign_up(client, "bob")
    ids = {}
    for visibility in ("public", "followers", "private"):
        created = await client.post(
            "/api/v1/posts",
            json={"text": f"#{visibility} post by alice", "visibility": visibility},
            headers=alice.headers,
        )
        assert created.status_code == 201, created.text
        ids[visibility] = created.json()["id"]
    return Scene(alice, bob, ids["public"], ids["followers"], ids["private"])


async def assert_rejected(
    client: httpx2.AsyncClient,
    container: Container,
    status: int | None,
    method: str,
    path: str,
    **kwargs: Any,
) -> dict[str, Any]:
    """Send the request; it must be a problem (``status``, or any 4xx when None) that writes
    nothing."""
    before = await snapshot(container)
    response = await client.request(method, path, **kwargs)
    where = f"{method} {path} {kwargs.get('json', kwargs.get('content', ''))!r:.120}"
    if status is None:
        assert 400 <= response.status_code < 500, f"{where}: {response.text}"
        status = response.status_code
    assert response.status_code == status, f"{where}: wanted {status}: {response.text}"
    problem = assert_problem(response, status)
    after = await snapshot(container)
    changed = {
        k: (before.get(k), after.get(k))
        for k in before.keys() | after.keys()
        if before.get(k) != after.get(k)
    }
    assert not changed, f"{method} {path} wrote despite answering {status}: {changed}"
    return problem


def field_named(problem: dict[str, Any], name: str) -> bool:
    return any(name in err["loc"] for err in problem.get("errors") or [])


POST_BODIES: list[tuple[str, Any, str | None]] = [
    ("text-5001-chars", {"text": "x" * 5001}, "text"),
    ("unknown-visibility", {"text": "hi", "visibility": "friends"}, "visibility"),
    ("visibility-case", {"text": "hi", "visibility": "PUBLIC"}, "visibility"),
    ("five-media", {"text": "hi", "media": [MEDIA] * 5}, "media"),
    ("js-url", {"text": "hi", "media": [{**MEDIA, "url": "javascript:alert(1)"}]}, "url"),
    ("ftp", {"text": "hi", "media": [{**MEDIA, "url": "ftp://files.example/a.png"}]}, "url"),
    (
        "data-url",
        {"text": "hi", "media": [{**MEDIA, "url": "data:image/png;base64,iVBORw0KGgo="}]},
        "url",
    ),
    ("no-media-type", {"text": "hi", "media": [{"url": "https://img.example/a.png"}]}, "type"),
    ("unknown-media-type", {"text": "hi", "media": [{**MEDIA, "type": "pdf"}]}, "type"),
    ("unknown-field", {"text": "hi", "mood": "happy"}, "mood"),
    ("empty-object", {}, None),
    ("empty-text", {"text": ""}, None),
    ("whitespace-text", {"text": "   \n\t "}, None),
    ("empty-media-list", {"text": "", "media": []}, None),
    ("text-not-a-string", {"text": 42}, "text"),
    ("quote-id-garbage", {"text": "hi", "quote_post_id": "abc"}, "quote_post_id"),
    ("ftp-link", {"text": "hi", "links": ["ftp://x.example"]}, "links"),
    ("array-body", [{"text": "hi"}], None),
]


async def test_invalid_post_bodies_are_422_and_write_nothing(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    """Each body is sent with an Idempotency-Key too: a rejected body must not store the key."""
    for case, body, field in POST_BODIES:
        problem = await assert_rejected(
            client,
            container,
            422,
            "POST",
            "/api/v1/posts",
            json=body,
            headers={**scene.alice.headers, "Idempotency-Key": f"bad-{case}"},
        )
        if field is not None:
            assert field_named(problem, field), (case, problem)


async def test_exactly_5000_chars_and_4_media_are_accepted(
    client: httpx2.AsyncClient, scene: Scene
) -> None:
    """The boundary the rejections above sit next to."""
    created = await client.post(
        "/api/v1/posts",
        json={"text": "x" * 5000, "media": [MEDIA] * 4},
        headers=scene.alice.headers,
    )
    assert created.status_code == 201, created.text
    assert len(created.json()["media"]) == 4


async def test_quote_of_a_missing_post_is_rejected(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    problem = await assert_rejected(
        client,
        container,
        None,
        "POST",
        "/api/v1/posts",
        json={"text": "look", "quote_post_id": "123456789012345"},
        headers=scene.bob.headers,
    )
    assert problem["status"] == 422


@pytest.mark.parametrize("target", ["followers", "private"])
async def test_quote_of_a_non_public_post_is_rejected_even_for_a_follower(
    client: httpx2.AsyncClient, container: Container, scene: Scene, target: str
) -> None:
    follow = await client.put("/api/v1/users/alice/follow", headers=scene.bob.headers)
    assert follow.status_code == 200
    pid = scene.followers_id if target == "followers" else scene.private_id
    for who in (scene.bob, scene.alice):  # the author cannot quote it publicly either
        await assert_rejected(
            client,
            container,
            422,
            "POST",
            "/api/v1/posts",
            json={"text": "look", "quote_post_id": pid},
            headers=who.headers,
        )


async def test_quote_of_a_deleted_post_is_rejected(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    deleted = await client.delete(f"/api/v1/posts/{scene.public_id}", headers=scene.alice.headers)
    assert deleted.status_code == 204
    await assert_rejected(
        client,
        container,
        422,
        "POST",
        "/api/v1/posts",
        json={"text": "look", "quote_post_id": scene.public_id},
        headers=scene.bob.headers,
    )


GARBAGE_READS = [
    ("/api/v1/posts/abc", 422),
    ("/api/v1/posts/-1", 422),
    ("/api/v1/posts/1.5", 422),
    ("/api/v1/posts/99999999999999999999", None),  # 20 digits
    ("/api/v1/posts/9999999999999999999", 404),  # 19 digits, above 2**63-1
    ("/api/v1/posts/0", 404),
    ("/api/v1/posts/abc/likes", 422),
    ("/api/v1/posts/99999999999999999999/likes", None),
]
WRITE_ROUTES = [
    ("PUT", "/like"),
    ("DELETE", "/like"),
    ("POST", "/share"),
    ("DELETE", "/share"),
    ("DELETE", ""),
    ("PATCH", ""),
]


async def test_garbage_post_ids_in_reads(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    for path, status in GARBAGE_READS:
        await assert_rejected(client, container, status, "GET", path, headers=scene.bob.headers)
    abc = await client.get("/api/v1/posts/abc")
    assert field_named(assert_problem(abc, 422), "post_id")


async def test_garbage_post_ids_in_writes(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    for garbage in ("abc", "99999999999999999999", "0", "9999999999999999999"):
        for method, suffix in WRITE_ROUTES:
            await assert_rejected(
                client,
                container,
                None,
                method,
                f"/api/v1/posts/{garbage}{suffix}",
                json={"text": "x"} if method == "PATCH" else None,
                headers=scene.bob.headers,
            )


async def test_acting_on_a_post_you_cannot_see_is_404(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    for pid in (scene.followers_id, scene.private_id):
        for method, suffix in [
            ("PUT", "/like"),
            ("POST", "/share"),
            ("GET", "/likes"),
            ("DELETE", "/like"),
            ("GET", ""),
        ]:
            await assert_rejected(
                client,
                container,
                404,
                method,
                f"/api/v1/posts/{pid}{suffix}",
                headers=scene.bob.headers,
            )


async def test_liking_a_post_of_someone_who_blocked_you_is_404(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    blocked = await client.put("/api/v1/users/bob/block", headers=scene.alice.headers)
    assert blocked.status_code == 200
    await assert_rejected(
        client,
        container,
        404,
        "PUT",
        f"/api/v1/posts/{scene.public_id}/like",
        headers=scene.bob.headers,
    )


async def test_following_blocking_or_muting_yourself_is_422(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    """And so is undoing it (DELETE): there is no such relationship to end."""
    for method in ("PUT", "DELETE"):
        for action in ("follow", "block", "mute"):
            for who in ("alice", "ALICE"):  # usernames are case-insensitive
                await assert_rejected(
                    client,
                    container,
                    422,
                    method,
                    f"/api/v1/users/{who}/{action}",
                    headers=scene.alice.headers,
                )


async def test_acting_on_a_missing_user_is_404(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    for method in ("PUT", "DELETE"):
        for action in ("follow", "block", "mute"):
            await assert_rejected(
                client,
                container,
                404,
                method,
                f"/api/v1/users/nobody_here/{action}",
                headers=scene.alice.headers,
            )


async def test_garbage_usernames_are_4xx(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    for username in ("ab", "bad-name", "x" * 31, "%00", "al%20ice"):
        await assert_rejected(
            client,
            container,
            None,
            "PUT",
            f"/api/v1/users/{username}/follow",
            headers=scene.alice.headers,
        )


async def test_following_someone_you_blocked_is_a_conflict(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    blocked = await client.put("/api/v1/users/bob/block", headers=scene.alice.headers)
    assert blocked.status_code == 200
    await assert_rejected(
        client, container, 409, "PUT", "/api/v1/users/bob/follow", headers=scene.alice.headers
    )


async def test_malformed_json_is_400(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    headers = {**scene.alice.headers, "content-type": "application/json"}
    for raw in (b'{"text": "hi"', b"{text: hi}", b'{"text": "hi",}', b"\xff\xfe", b"nope"):
        for method, path in (
            ("POST", "/api/v1/posts"),
            ("PATCH", f"/api/v1/posts/{scene.public_id}"),
        ):
            await assert_rejected(
                client, container, 400, method, path, content=raw, headers=headers
            )


async def test_garbage_if_match_on_patch_is_412(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    for if_match in ("garbage", '"abc"', 'W/"x"', '""', '"-1"', "*garbage", ",", '"v1"'):
        await assert_rejected(
            client,
            container,
            412,
            "PATCH",
            f"/api/v1/posts/{scene.public_id}",
            json={"text": "changed"},
            headers={**scene.alice.headers, "If-Match": if_match},
        )


async def test_superscript_digit_if_match_is_412_not_500(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    await assert_rejected(
        client,
        container,
        412,
        "PATCH",
        f"/api/v1/posts/{scene.public_id}",
        json={"text": "changed"},
        headers={**scene.alice.headers, "If-Match": b'"\xb2"'},  # type: ignore[dict-item]
    )


async def test_stale_if_match_is_412(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    read = await client.get(f"/api/v1/posts/{scene.public_id}", headers=scene.alice.headers)
    etag = read.headers["etag"]
    edited = await client.patch(
        f"/api/v1/posts/{scene.public_id}",
        json={"text": "v2"},
        headers={**scene.alice.headers, "If-Match": etag},
    )
    assert edited.status_code == 200, edited.text
    await assert_rejected(
        client,
        container,
        412,
        "PATCH",
        f"/api/v1/posts/{scene.public_id}",
        json={"text": "v3"},
        headers={**scene.alice.headers, "If-Match": etag},
    )
    current = await client.get(f"/api/v1/posts/{scene.public_id}")
    assert current.json()["text"] == "v2"


PATCH_BODIES = [
    ({"text": "hi", "mood": "happy"}, "mood"),
    ({"author_id": "1"}, "author_id"),
    ({"version": 7}, "version"),
    ({"visibility": "everyone"}, "visibility"),
    ({"text": "y" * 5001}, "text"),
    ({"text": None, "media": [MEDIA]}, "media"),
]


async def test_patch_with_unknown_or_invalid_fields_is_422(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    for body, field in PATCH_BODIES:
        problem = await assert_rejected(
            client,
            container,
            422,
            "PATCH",
            f"/api/v1/posts/{scene.public_id}",
            json=body,
            headers=scene.alice.headers,
        )
        assert field_named(problem, field), (body, problem)


async def test_patch_to_empty_text_is_422(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    await assert_rejected(
        client,
        container,
        422,
        "PATCH",
        f"/api/v1/posts/{scene.public_id}",
        json={"text": ""},
        headers=scene.alice.headers,
    )


async def test_body_of_the_wrong_content_type_writes_nothing(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    await assert_rejected(
        client,
        container,
        None,
        "POST",
        "/api/v1/posts",
        data={"text": "form encoded"},
        headers=scene.alice.headers,
    )


def cursor_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def list_paths(scene: Scene) -> list[str]:
    return [
        f"/api/v1/posts/{scene.public_id}/likes",
        "/api/v1/users/alice/followers",
        "/api/v1/users/alice/following",
    ]


async def test_cursor_and_limit_garbage_on_lists_is_4xx(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    liked = await client.put(f"/api/v1/posts/{scene.public_id}/like", headers=scene.bob.headers)
    assert liked.status_code == 200
    queries: list[tuple[dict[str, str], int]] = [
        ({"cursor": "garbage"}, 400),
        ({"cursor": ""}, 400),
        ({"cursor": "%%%"}, 400),
        ({"cursor": cursor_of(b'{"v":1,"id":"x"}')}, 400),
        ({"cursor": cursor_of(b'{"v":1,"id":1.5}')}, 400),
        ({"cursor": cursor_of(b'{"v":1,"id":true}')}, 400),
        ({"cursor": cursor_of(b'{"v":2,"id":1}')}, 400),
        ({"cursor": cursor_of(b'{"id":1}')}, 400),
        ({"cursor": cursor_of(b"[1]")}, 400),
        ({"cursor": cursor_of(b'{"v":1,"id":100000000000000000000}')}, 400),
        ({"cursor": "c" * 513}, 422),
        ({"limit": "0"}, 422),
        ({"limit": "101"}, 422),
        ({"limit": "abc"}, 422),
    ]
    for path in list_paths(scene):
        for params, status in queries:
            await assert_rejected(
                client, container, status, "GET", path, params=params, headers=scene.bob.headers
            )


async def test_cursor_id_beyond_bigint_is_400_not_500(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    for path in list_paths(scene):
        for raw in (b'{"v":1,"id":9223372036854775808}', b'{"v":1,"id":18446744073709551615}'):
            await assert_rejected(
                client,
                container,
                400,
                "GET",
                path,
                params={"cursor": cursor_of(raw)},
                headers=scene.bob.headers,
            )


async def test_quote_post_id_zero_is_rejected_not_an_empty_post(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    for body in ({"text": "", "quote_post_id": "0"}, {"quote_post_id": 0}):
        await assert_rejected(
            client, container, 422, "POST", "/api/v1/posts", json=body, headers=scene.bob.headers
        )


async def test_quote_post_id_integer_beyond_bigint_is_422_not_500(
    client: httpx2.AsyncClient, container: Container, scene: Scene
) -> None:
    for big in (2**63, 2**64 - 1, 10**30):
        await assert_rejected(
            client,
            container,
            422,
            "POST",
            "/api/v1/posts",
            json={"text": "x", "quote_post_id": big},
            headers=scene.bob.headers,
        )
