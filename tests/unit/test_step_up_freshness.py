"""The confirmation through an OpenID provider accepts its ``auth_time`` only from after the
confirmation started (``max_age=0`` was asked for), within a minute of clock skew."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tidings.auth.providers.base import ProviderRejected
from tidings.auth.providers.service import check_fresh

STARTED = datetime(2026, 12, 1, 16, 0, 0, tzinfo=UTC)


def _at(delta: timedelta) -> int:
    return int((STARTED + delta).timestamp())


@pytest.mark.parametrize(
    "auth_time",
    [None, _at(timedelta(seconds=30)), _at(timedelta(0)), _at(timedelta(seconds=-60))],
    ids=["not-said", "after", "at-start", "skew"],
)
def test_a_fresh_or_unstated_authentication_is_accepted(auth_time: int | None) -> None:
    check_fresh("Keycloak", auth_time, STARTED)


@pytest.mark.parametrize("before", [timedelta(seconds=61), timedelta(hours=3)])
def test_an_authentication_from_before_the_confirmation_is_refused(before: timedelta) -> None:
    with pytest.raises(ProviderRejected, match="did not ask you to sign in again"):
        check_fresh("Keycloak", _at(-before), STARTED)


@pytest.mark.parametrize("absurd", [1e20, -1e20, float("nan")])
def test_an_impossible_auth_time_is_a_refusal_not_a_crash(absurd: float) -> None:
    with pytest.raises(ProviderRejected, match="impossible auth_time"):
        check_fresh("Keycloak", absurd, STARTED)
