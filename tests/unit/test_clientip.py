"""The client's address behind trusted proxies: only the header the proxy sets is read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tidings.core.clientip import client_ip, parse_networks
from tidings.settings import Settings

PROXY = "10.0.0.5"
TRUSTED = parse_networks(["10.0.0.0/8"])


def _h(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in pairs]


def test_an_untrusted_peer_is_the_client_whatever_it_sends() -> None:
    headers = _h(("X-Forwarded-For", "198.51.100.1"), ("Forwarded", "for=198.51.100.2"))
    assert client_ip("203.0.113.7", headers, TRUSTED) == "203.0.113.7"
    assert client_ip(PROXY, headers, []) == PROXY  # no trusted proxies configured


def test_x_forwarded_for_is_read_and_a_clients_forwarded_is_not() -> None:
    # A proxy that sets only X-Forwarded-For passes the client's own Forwarded through.
    headers = _h(("Forwarded", "for=198.51.100.66"), ("X-Forwarded-For", "203.0.113.7"))
    assert client_ip(PROXY, headers, TRUSTED) == "203.0.113.7"
    assert client_ip(PROXY, headers, TRUSTED, "x-forwarded-for") == "203.0.113.7"


def test_forwarded_is_read_when_named_and_x_forwarded_for_is_not() -> None:
    headers = _h(("X-Forwarded-For", "198.51.100.66"), ("Forwarded", 'for="[2001:db8::1]:443"'))
    assert client_ip(PROXY, headers, TRUSTED, "forwarded") == "2001:db8::1"
    only_xff = _h(("X-Forwarded-For", "198.51.100.66"))
    assert client_ip(PROXY, only_xff, TRUSTED, "forwarded") == PROXY


def test_the_rightmost_untrusted_hop_is_the_client() -> None:
    # The client prepends a lie; the proxies append what they saw.
    headers = _h(("X-Forwarded-For", "198.51.100.66, 203.0.113.7, 10.0.0.9"))
    assert client_ip(PROXY, headers, TRUSTED) == "203.0.113.7"
    forwarded = _h(("Forwarded", "for=198.51.100.66, for=203.0.113.7;proto=https, for=10.0.0.9"))
    assert client_ip(PROXY, forwarded, TRUSTED, "forwarded") == "203.0.113.7"


def test_repeated_header_lines_combine_in_order() -> None:
    # A proxy that adds its own line after the client's (HAProxy's option forwardfor).
    headers = _h(("X-Forwarded-For", "198.51.100.66"), ("X-Forwarded-For", "203.0.113.7"))
    assert client_ip(PROXY, headers, TRUSTED) == "203.0.113.7"


def test_an_unparsable_hop_leaves_the_peer() -> None:
    assert client_ip(PROXY, _h(("X-Forwarded-For", "not-an-ip")), TRUSTED) == PROXY
    assert client_ip(PROXY, _h(("X-Forwarded-For", "10.0.0.1, 10.0.0.2")), TRUSTED) == PROXY
    assert client_ip(None, [], TRUSTED) == "unknown"


def test_trusted_proxies_need_the_header_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="TIDINGS_PROXY_HEADER"):
        Settings(data_dir=tmp_path, trusted_proxies=["10.0.0.0/8"])  # type: ignore[call-arg]
    named = Settings(
        data_dir=tmp_path,
        trusted_proxies="10.0.0.0/8",  # type: ignore[arg-type]
        proxy_header="forwarded",
    )
    assert (named.trusted_proxies, named.proxy_header) == (["10.0.0.0/8"], "forwarded")
