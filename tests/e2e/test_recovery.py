"""Password reset and email verification by one-time links sent by mail (on SQLite and
PostgreSQL, through the HTTP API; the mail is what the mail loop would send)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select, update

from tests.conftest import make_settings
from tests.support.api import DEFAULT_PASSWORD, assert_problem, login, sign_up
from tests.support.rows import confirm_holder, drop_password
from tidings.accounts.models import User
from tidings.app import create_app
from tidings.audit.models import AuditEvent
from tidings.core.container import Container
from tidings.core.db import utcnow
from tidings.mail.delivery import default_renderers, send_due
from tidings.recovery.models import EmailToken
from tidings.recovery.repository import TokenRepository, token_hash
from tidings.settings import Settings

NEW_PASSWORD = "a-brand-new-staple-77"
RESET = "/api/v1/auth/password-reset"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # the app's own mail loop stays out of the way: the tests send what is due themselves
    return make_settings(tmp_path / "data", database_url, mail_interval_seconds=3600)


class Outbox:
    """A sender that keeps the messages (what an SMTP server would receive)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def send(self, message: EmailMessage, recipient: str) -> None:
        assert recipient == message["To"]
        self.messages.append(message)


async def _deliver(container: Container) -> list[EmailMessage]:
    outbox = Outbox()
    await send_due(container.db, container.settings, outbox, default_renderers())
    return outbox.messages


def _token(message: EmailMessage) -> str:
    body = message.get_content()
    found = re.search(r"code:\n\n(\S+)\n", body) or re.search(r"token=(\S+)\n", body)
    assert found, body
    return found.group(1)


async def test_a_forgotten_password_is_reset_by_the_mailed_code(
    client: httpx2.AsyncClient, container: Container
) -> None:
    alice = await sign_up(client, "alice")
    asked = await client.post(RESET, json={"email": "Alice@Example.com"})
    unknown = await client.post(RESET, json={"email": "nobody@example.com"})
    assert asked.status_code == unknown.status_code == 202, (asked.text, unknown.text)
    assert asked.json() == unknown.json()  # no way to tell which addresses have accounts
    [message] = await _deliver(container)
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "Reset your password"
    token = _token(message)
    assert await _deliver(container) == []  # sent once

    weak = await client.post(f"{RESET}/confirm", json={"token": token, "new_password": "short"})
    assert_problem(weak, 422)
    wrong = await client.post(
        f"{RESET}/confirm", json={"token": "x" * 43, "new_password": NEW_PASSWORD}
    )
    assert assert_problem(wrong, 422)["errors"][0]["loc"] == ["body", "token"]
    done = await client.post(
        f"{RESET}/confirm", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert done.status_code == 204, done.text

    assert_problem(await client.get("/api/v1/me", headers=alice.headers), 401)  # signed out
    refresh = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": alice.refresh_token},
    )
    assert refresh.status_code == 400, refresh.text
    old = await client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": "alice", "password": DEFAULT_PASSWORD},
    )
    assert old.status_code in (400, 401), old.text
    [notice] = await _deliver(container)
    assert notice["To"] == "alice@example.com"
    assert notice["Subject"] == "Your password was changed"
    again = await login(client, "alice", NEW_PASSWORD)
    me = (await client.get("/api/v1/me", headers=again.headers)).json()
    assert me["email_verified"] is True  # the code reached the address
    reused = await client.post(
        f"{RESET}/confirm", json={"token": token, "new_password": "yet-another-staple-88"}
    )
    assert_problem(reused, 422)


async def test_codes_work_until_one_is_used_or_they_expire_and_are_capped_per_hour(
    client: httpx2.AsyncClient, container: Container
) -> None:
    await sign_up(client, "bob")
    for _ in range(5):  # asked for five times (from many addresses, say): three mails an hour
        assert (await client.post(RESET, json={"email": "bob@example.com"})).status_code == 202
    first, second, third = (_token(m) for m in await _deliver(container))
    async with container.db.unit_of_work(write=True) as session:  # the third one expired
        await session.execute(
            update(EmailToken)
            .where(EmailToken.token_hash == token_hash(third))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    body = {"token": third, "new_password": NEW_PASSWORD}
    assert_problem(await client.post(f"{RESET}/confirm", json=body), 422)
    await login(client, "bob")  # the password did not change
    body = {"token": second, "new_password": NEW_PASSWORD}  # a newer request did not cancel it
    assert (await client.post(f"{RESET}/confirm", json=body)).status_code == 204
    body = {"token": first, "new_password": "another-staple-99"}  # used one: the others retire
    assert_problem(await client.post(f"{RESET}/confirm", json=body), 422)
    await login(client, "bob", NEW_PASSWORD)


async def test_no_mail_for_accounts_that_may_not_sign_in(
    client: httpx2.AsyncClient, container: Container
) -> None:
    user = await sign_up(client, "suspended_one")
    async with container.db.unit_of_work(write=True) as session:
        await session.execute(
            update(User).where(User.id == int(user.user_id)).values(suspended=True)
        )
    assert (
        await client.post(RESET, json={"email": "suspended_one@example.com"})
    ).status_code == 202
    assert await _deliver(container) == []


async def test_an_email_address_is_verified_by_the_mailed_code(
    client: httpx2.AsyncClient, container: Container
) -> None:
    carol = await sign_up(client, "carol")
    assert (await client.get("/api/v1/me", headers=carol.headers)).json()["email_verified"] is False
    assert_problem(await client.post("/api/v1/me/email/verification"), 401)
    asked = await client.post("/api/v1/me/email/verification", headers=carol.headers)
    assert asked.status_code == 202, asked.text
    [message] = await _deliver(container)
    assert message["To"] == "carol@example.com"
    verify = "/api/v1/me/email/verify"
    assert_problem(await client.post(verify, json={"token": "nope"}, headers=carol.headers), 422)
    token = _token(message)
    assert_problem(await client.post(verify, json={"token": token}), 401)
    # whoever follows the link must be signed in as the account that asked: someone who
    # registered with your address cannot have you verify it for them
    other = await sign_up(client, "carols_neighbour")
    elsewhere = await client.post(verify, json={"token": token}, headers=other.headers)
    assert assert_problem(elsewhere, 422)["errors"][0]["loc"] == ["body", "token"]
    verified = await client.post(verify, json={"token": token}, headers=carol.headers)
    assert verified.status_code == 204, verified.text
    me: dict[str, Any] = (await client.get("/api/v1/me", headers=carol.headers)).json()
    assert me["email_verified"] is True
    assert_problem(await client.post(verify, json={"token": token}, headers=carol.headers), 422)
    twice = await client.post("/api/v1/me/email/verification", headers=carol.headers)
    assert_problem(twice, 409)


@asynccontextmanager
async def _app(settings: Settings) -> AsyncIterator[tuple[httpx2.AsyncClient, Container]]:
    """An app of its own with these settings: its client and container."""
    container = Container.build(settings)
    try:
        app = create_app(settings, container)
        transport = httpx2.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx2.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            yield client, container
    finally:
        await container.close()


async def test_the_link_follows_the_configured_template(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(
        tmp_path / "data",
        database_url,
        mail_interval_seconds=3600,
        password_reset_url="https://app.example/reset?token={token}",
    )
    async with _app(settings) as (client, container):
        await sign_up(client, "dave")
        await client.post(RESET, json={"email": "dave@example.com"})
        [message] = await _deliver(container)
    assert re.search(r"https://app\.example/reset\?token=[\w-]{43}\n", message.get_content())


async def test_without_mail_the_routes_that_need_it_answer_503(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path / "data", database_url, mail_backend="disabled")
    async with _app(settings) as (client, container):
        erin = await sign_up(client, "erin")
        assert_problem(await client.post(RESET, json={"email": "erin@example.com"}), 503)
        sent = await client.post("/api/v1/me/email/verification", headers=erin.headers)
        assert_problem(sent, 503)
        move = {"email": "erin@example.org", "password": DEFAULT_PASSWORD}
        assert_problem(await client.post("/api/v1/me/email", json=move, headers=erin.headers), 503)
        change = {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}
        changed = await client.post("/api/v1/me/password", json=change, headers=erin.headers)
        assert changed.status_code == 204, changed.text  # no notice to queue, no error
        assert await _deliver(container) == []


async def test_a_password_change_is_told_to_the_address(
    client: httpx2.AsyncClient, container: Container
) -> None:
    frank = await sign_up(client, "frank")
    change = {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}
    changed = await client.post("/api/v1/me/password", json=change, headers=frank.headers)
    assert changed.status_code == 204, changed.text
    [notice] = await _deliver(container)
    assert (notice["To"], notice["Subject"]) == ("frank@example.com", "Your password was changed")


CHANGE = "/api/v1/me/email"
CHANGE_CONFIRM = "/api/v1/me/email/confirm"


async def _audited(container: Container, action: str) -> int:
    async with container.db.unit_of_work() as session:
        stmt = select(func.count()).where(AuditEvent.action == action)
        return int((await session.execute(stmt)).scalar_one())


async def test_an_email_address_is_changed_by_the_link_mailed_to_the_new_one(
    client: httpx2.AsyncClient, container: Container
) -> None:
    grace = await sign_up(client, "grace")
    await sign_up(client, "heidi")
    new = {"email": "Grace.New@Example.org", "password": DEFAULT_PASSWORD}
    assert_problem(await client.post(CHANGE, json=new), 401)
    for body, status, field in (
        ({"email": "grace.new@example.org"}, 422, "password"),
        ({"email": "grace.new@example.org", "password": "not-the-password"}, 422, "password"),
        ({"email": "not an address", "password": DEFAULT_PASSWORD}, 422, "email"),
        ({"email": "GRACE@example.com", "password": DEFAULT_PASSWORD}, 409, "email"),
        ({"email": "heidi@example.com", "password": DEFAULT_PASSWORD}, 409, "email"),
    ):
        refused = await client.post(CHANGE, json=body, headers=grace.headers)
        assert assert_problem(refused, status)["errors"][0]["loc"][-1] == field, refused.text
    assert await _deliver(container) == []  # nothing refused sent anything

    asked = await client.post(CHANGE, json=new, headers=grace.headers)
    assert asked.status_code == 202, asked.text
    messages = {m["To"]: m for m in await _deliver(container)}
    assert set(messages) == {"grace.new@example.org", "grace@example.com"}
    assert messages["grace.new@example.org"]["Subject"] == "Confirm your new email address"
    warning = messages["grace@example.com"]
    assert warning["Subject"] == "A change of your email address was requested"
    assert "grace.new@example.org" in warning.get_content()
    assert "token" not in warning.get_content()  # the old address gets no link
    me = (await client.get("/api/v1/me", headers=grace.headers)).json()
    assert me["email"] == "grace@example.com"  # nothing changes before the link is used

    token = _token(messages["grace.new@example.org"])
    bad = await client.post(CHANGE_CONFIRM, json={"token": "x" * 43}, headers=grace.headers)
    assert_problem(bad, 422)
    assert_problem(await client.post(CHANGE_CONFIRM, json={"token": token}), 401)
    # whoever got the mail cannot use the link signed in as someone else (heidi here)
    heidi = await login(client, "heidi")
    elsewhere = await client.post(CHANGE_CONFIRM, json={"token": token}, headers=heidi.headers)
    assert assert_problem(elsewhere, 422)["errors"][0]["loc"] == ["body", "token"]
    done = await client.post(CHANGE_CONFIRM, json={"token": token}, headers=grace.headers)
    assert done.status_code == 204, done.text
    me = (await client.get("/api/v1/me", headers=grace.headers)).json()
    assert (me["email"], me["email_verified"]) == ("grace.new@example.org", True)
    [told] = await _deliver(container)
    assert (told["To"], told["Subject"]) == ("grace@example.com", "Your email address was changed")
    used = await client.post(CHANGE_CONFIRM, json={"token": token}, headers=grace.headers)
    assert_problem(used, 422)
    by_new = await login(client, "grace.new@example.org")  # signs in with the new address
    assert (await client.get("/api/v1/me", headers=by_new.headers)).json()["username"] == "grace"
    # the old address now belongs to no account: a reset sent there goes nowhere
    assert (await client.post(RESET, json={"email": "grace@example.com"})).status_code == 202
    assert await _deliver(container) == []
    assert await _audited(container, "account:email_change_requested") == 1
    assert await _audited(container, "account:email_changed") == 1


async def test_a_password_change_cancels_a_pending_email_change(
    client: httpx2.AsyncClient, container: Container
) -> None:
    ivan = await sign_up(client, "ivan")
    body = {"email": "ivan.other@example.org", "password": DEFAULT_PASSWORD}
    assert (await client.post(CHANGE, json=body, headers=ivan.headers)).status_code == 202
    [link] = [m for m in await _deliver(container) if m["To"] == "ivan.other@example.org"]
    change = {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}
    changed = await client.post("/api/v1/me/password", json=change, headers=ivan.headers)
    assert changed.status_code == 204, changed.text
    ivan = await login(client, "ivan", NEW_PASSWORD)
    late = await client.post(CHANGE_CONFIRM, json={"token": _token(link)}, headers=ivan.headers)
    assert_problem(late, 422)
    me = (await client.get("/api/v1/me", headers=ivan.headers)).json()
    assert me["email"] == "ivan@example.com"


async def test_an_address_taken_before_the_link_is_used_is_a_conflict(
    client: httpx2.AsyncClient, container: Container
) -> None:
    judy = await sign_up(client, "judy")
    body = {"email": "wanted@example.org", "password": DEFAULT_PASSWORD}
    assert (await client.post(CHANGE, json=body, headers=judy.headers)).status_code == 202
    [link] = [m for m in await _deliver(container) if m["To"] == "wanted@example.org"]
    await sign_up(client, "kim", email="wanted@example.org")  # registered meanwhile
    taken = await client.post(CHANGE_CONFIRM, json={"token": _token(link)}, headers=judy.headers)
    assert "another account" in assert_problem(taken, 409)["detail"]
    me = (await client.get("/api/v1/me", headers=judy.headers)).json()
    assert me["email"] == "judy@example.com"
    assert await _audited(container, "account:email_changed") == 0


async def test_an_account_without_a_password_sets_one_once_confirmed_and_then_moves(
    client: httpx2.AsyncClient, container: Container
) -> None:
    """An account a sign-in provider made has no password: a token alone (maybe stolen)
    neither gives it one nor moves its address; the holder, once confirmed through the
    provider, sets one first."""
    leo = await sign_up(client, "leo")
    await drop_password(container, int(leo.user_id))  # as a sign-in provider makes it
    move = {"email": "leo@example.org", "confirm_username": "leo"}
    refused = await client.post(CHANGE, json=move, headers=leo.headers)
    assert "Set a password first" in assert_problem(refused, 409)["detail"]
    first = {"new_password": NEW_PASSWORD}
    for ago in (None, timedelta(minutes=11)):  # never confirmed, or too long ago
        await confirm_holder(container, int(leo.user_id), ago)
        stale = await client.post("/api/v1/me/password", json=first, headers=leo.headers)
        assert "confirm it is you" in assert_problem(stale, 403)["detail"]
    await confirm_holder(container, int(leo.user_id), timedelta(seconds=5))
    done = await client.post("/api/v1/me/password", json=first, headers=leo.headers)
    assert done.status_code == 204, done.text
    leo = await login(client, "leo", NEW_PASSWORD)
    move = {"email": "leo@example.org", "password": NEW_PASSWORD}
    assert (await client.post(CHANGE, json=move, headers=leo.headers)).status_code == 202


async def test_two_links_of_one_account_used_at_once_take_turns(
    client: httpx2.AsyncClient, container: Container, backend: str
) -> None:
    """A reset link and a change link of one account, used at the same moment: each waits
    for the other (the account's row is locked before its tokens), none fails as a conflict."""
    statuses: list[tuple[int, int]] = []
    for i in range(6):  # bounded
        name = f"racer{i}"
        user = await sign_up(client, name)
        moved = f"{name}.moved@example.org"
        async with container.db.unit_of_work(write=True) as session:
            tokens = TokenRepository(session)
            soon = utcnow() + timedelta(minutes=5)
            reset = await tokens.issue(
                int(user.user_id), "password_reset", f"{name}@example.com", soon
            )
            change = await tokens.issue(int(user.user_id), "change_email", moved, soon)
        both = await asyncio.gather(
            client.post(f"{RESET}/confirm", json={"token": reset, "new_password": NEW_PASSWORD}),
            client.post(CHANGE_CONFIRM, json={"token": change}, headers=user.headers),
        )
        statuses.append((both[0].status_code, both[1].status_code))
    # the reset retires the change link (204 then 422), or the change goes first and the
    # reset link no longer matches the address (422 then 204): never a 409 or a 5xx
    assert all(sorted(pair) == [204, 422] or pair == (204, 204) for pair in statuses), statuses
