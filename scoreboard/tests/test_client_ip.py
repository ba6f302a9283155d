"""The client IP: REMOTE_ADDR, unless a trusted proxy vouches for an X-Forwarded-For hop."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory, override_settings
from hypothesis import given
from hypothesis import strategies as st
from rest_framework.request import Request

from scoreboard import config
from scoreboard.client_ip import client_ip, forwarded_client

PROXY_NETWORKS = "10.0.0.0/8, 2001:db8::/32, 192.0.2.7"
TRUSTED = config.trusted_proxies({"SCOREBOARD_TRUSTED_PROXIES": PROXY_NETWORKS})


@pytest.fixture
def trusted_proxies(settings: Any) -> None:
    settings.SCOREBOARD_TRUSTED_PROXIES = TRUSTED


def ip_of(remote_addr: str, forwarded_for: str | None = None) -> str:
    meta: dict[str, Any] = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client_ip(RequestFactory().get("/api/v1/users/me", **meta))


# --- configuration -------------------------------------------------------------------------


def test_no_trusted_proxies_by_default() -> None:
    assert config.trusted_proxies({}) == ()


def test_trusted_proxies_are_addresses_and_networks_of_both_families() -> None:
    proxies = config.trusted_proxies({"SCOREBOARD_TRUSTED_PROXIES": PROXY_NETWORKS})

    assert proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("192.0.2.7/32"),
    )


@pytest.mark.parametrize(
    "value", ["proxy.internal", "10.0.0.300", "10.0.0.1/8", "2001:db8::/129", "10.0.0.0/8;"]
)
def test_an_unusable_trusted_proxy_refuses_to_start(value: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="SCOREBOARD_TRUSTED_PROXIES"):
        config.trusted_proxies({"SCOREBOARD_TRUSTED_PROXIES": f"10.1.2.3,{value}"})


# --- untrusted peers -----------------------------------------------------------------------


def test_without_trusted_proxies_the_client_is_the_peer() -> None:
    # when a direct client sends X-Forwarded-For
    # then it is ignored: nothing vouches for it
    assert ip_of("203.0.113.9", "198.51.100.1") == "203.0.113.9"


@pytest.mark.usefixtures("trusted_proxies")
def test_a_spoofed_header_from_an_untrusted_peer_changes_nothing() -> None:
    # given trusted proxies, when a peer that is not one of them claims a forwarded address
    # (even a trusted proxy's) then the peer is the client
    assert ip_of("203.0.113.9", "198.51.100.1, 10.0.0.1") == "203.0.113.9"


def test_an_ipv4_mapped_peer_is_reported_as_ipv4() -> None:
    assert ip_of("::ffff:203.0.113.9") == "203.0.113.9"


def test_a_peer_that_is_no_address_is_returned_as_is() -> None:
    # e.g. a server listening on a Unix socket gives no peer address
    assert ip_of("") == ""


# --- trusted proxies -----------------------------------------------------------------------


@pytest.mark.usefixtures("trusted_proxies")
@pytest.mark.parametrize(
    ("remote_addr", "forwarded_for", "expected"),
    [
        pytest.param("10.0.0.1", "203.0.113.9", "203.0.113.9", id="one-proxy"),
        pytest.param("10.0.0.1", "203.0.113.9, 10.2.3.4", "203.0.113.9", id="proxy-chain-cidr"),
        pytest.param("192.0.2.7", "203.0.113.9", "203.0.113.9", id="single-address-entry"),
        pytest.param(
            "10.0.0.1", "6.6.6.6, 203.0.113.9", "203.0.113.9", id="client-prepended-a-spoof"
        ),
        pytest.param("10.0.0.1", "10.9.9.9, 10.2.3.4", "10.9.9.9", id="all-trusted-left-most"),
        pytest.param("10.0.0.1", None, "10.0.0.1", id="no-header-the-proxy"),
        pytest.param("10.0.0.1", "", "10.0.0.1", id="empty-header-the-proxy"),
        pytest.param(
            "10.0.0.1", "203.0.113.9, garbage, 10.2.3.4", "10.2.3.4", id="malformed-stops"
        ),
        pytest.param("10.0.0.1", "203.0.113.9,", "10.0.0.1", id="trailing-comma"),
        pytest.param("2001:db8::1", "2a00:1450::5, 2001:db8:1::2", "2a00:1450::5", id="ipv6"),
        pytest.param("10.0.0.1", "2a00:1450::5", "2a00:1450::5", id="ipv6-client-via-ipv4"),
        pytest.param("::ffff:10.0.0.1", "203.0.113.9", "203.0.113.9", id="ipv4-mapped-proxy"),
        pytest.param("10.0.0.1", "203.0.113.9:51234", "203.0.113.9", id="ipv4-with-port"),
        pytest.param("10.0.0.1", "[2a00:1450::5]:443", "2a00:1450::5", id="ipv6-with-port"),
        pytest.param("10.0.0.1", "  203.0.113.9  ,10.2.3.4 ", "203.0.113.9", id="spaces"),
    ],
)
def test_behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client(
    remote_addr: str, forwarded_for: str | None, expected: str
) -> None:
    assert ip_of(remote_addr, forwarded_for) == expected


@pytest.mark.usefixtures("trusted_proxies")
def test_a_drf_request_is_accepted() -> None:
    http_request = RequestFactory().get(
        "/api/v1/users/me", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9"
    )

    assert client_ip(Request(http_request)) == "203.0.113.9"


# --- properties ----------------------------------------------------------------------------

untrusted_ipv4 = st.ip_addresses(v=4).filter(lambda ip: not any(ip in net for net in TRUSTED))
proxy_ipv4 = st.ip_addresses(network="10.0.0.0/8")
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
)


@given(
    spoof=header_text,
    client=untrusted_ipv4,
    proxies=st.lists(proxy_ipv4, max_size=4),
    peer=proxy_ipv4,
)
def test_whatever_the_client_prepends_the_hop_its_proxy_saw_wins(
    spoof: str, client: Any, proxies: list[Any], peer: Any
) -> None:
    # given a chain of trusted proxies whose first one saw `client`, and whatever the client
    # itself put in front of it
    header = ", ".join([spoof, str(client), *map(str, proxies)])

    # then the client is the address the first trusted proxy saw
    assert forwarded_client(peer, header, TRUSTED) == client


@given(peer=untrusted_ipv4, header=header_text)
def test_an_untrusted_peer_is_always_the_client(peer: Any, header: str) -> None:
    request = RequestFactory().get("/", REMOTE_ADDR=str(peer), HTTP_X_FORWARDED_FOR=header)

    with override_settings(SCOREBOARD_TRUSTED_PROXIES=TRUSTED):
        assert client_ip(request) == str(peer)
