from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opskit._core.clientip import ClientIP, parse_ip
from opskit._core.http import Headers

PROXIES = ClientIP(["10.0.0.0/8", "fd00::/8"])


def h(**kw: str) -> Headers:
    return Headers((k.replace("_", "-"), v) for k, v in kw.items())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1.2.3.4", "1.2.3.4"),
        (" 1.2.3.4:8080 ", "1.2.3.4"),
        ('"[2001:db8::1]:4711"', "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::1"),
        ("unknown", None),
        ("_hidden", None),
        ("", None),
        ("1.2.3.4:x", None),
        ("[::1", None),
        ("[::1]x", None),
        ("999.1.1.1", None),
    ],
)
def test_parse_ip(raw: str, expected: str | None) -> None:
    got = parse_ip(raw)
    assert (None if got is None else str(got)) == expected


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert ClientIP().resolve("203.0.113.9", h(x_forwarded_for="1.1.1.1")) == "203.0.113.9"
    assert ClientIP().resolve(None, h()) is None


def test_untrusted_peer_cannot_forge_forwarded_headers() -> None:
    forged = h(x_forwarded_for="1.1.1.1", forwarded="for=2.2.2.2")
    assert PROXIES.resolve("203.0.113.9", forged) == "203.0.113.9"


def test_xff_read_right_to_left_stopping_at_first_untrusted() -> None:
    # client wrote "6.6.6.6" itself; real client 198.51.100.7; then two of our proxies.
    hdr = h(x_forwarded_for="6.6.6.6, 198.51.100.7, 10.0.0.2")
    assert PROXIES.resolve("10.0.0.1", hdr) == "198.51.100.7"


def test_repeated_xff_headers_are_one_list() -> None:
    hdr = Headers([("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.7")])
    assert PROXIES.resolve("10.0.0.1", hdr) == "198.51.100.7"


def test_all_hops_trusted_gives_the_leftmost() -> None:
    assert PROXIES.resolve("10.0.0.1", h(x_forwarded_for="10.1.1.1, 10.2.2.2")) == "10.1.1.1"


def test_forwarded_is_preferred_and_parsed_with_quotes_and_ipv6() -> None:
    hdr = h(
        forwarded='for=6.6.6.6;proto=https, for="[2001:db8:cafe::17]:4711";by=10.0.0.3',
        x_forwarded_for="7.7.7.7",
    )
    assert PROXIES.resolve("10.0.0.1", hdr) == "2001:db8:cafe::17"
    assert PROXIES.resolve("fd00::1", hdr) == "2001:db8:cafe::17"
    # X-Forwarded-For only, when configured so.
    xff_only = ClientIP(["10.0.0.0/8"], headers=["x-forwarded-for"])
    assert xff_only.resolve("10.0.0.1", hdr) == "7.7.7.7"


@pytest.mark.parametrize(
    "headers",
    [
        h(x_forwarded_for="1.1.1.1,,2.2.2.2"),
        h(x_forwarded_for="not-an-ip"),
        h(x_forwarded_for=", "),
        h(forwarded="for=unknown"),
        h(forwarded='for="1.1.1.1'),
        h(forwarded="proto=https"),
        h(forwarded="garbage"),
        h(x_forwarded_for=",".join(["1.1.1.1"] * 100)),
    ],
)
def test_malformed_headers_fall_back_to_the_peer(headers: Headers) -> None:
    assert PROXIES.resolve("10.0.0.1", headers) == "10.0.0.1"


def test_trusted_peer_without_headers_is_the_client() -> None:
    assert PROXIES.resolve("10.0.0.1", h()) == "10.0.0.1"
    assert PROXIES.resolve("not-an-address", h(x_forwarded_for="1.1.1.1")) == "not-an-address"


def test_bad_configuration_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="CIDR"):
        ClientIP(["10.0.0.0/33"])
    with pytest.raises(ValueError, match="header"):
        ClientIP(["10.0.0.0/8"], headers=["x-real-ip"])  # type: ignore[list-item]
    assert PROXIES.is_trusted(ipaddress.ip_address("10.9.9.9"))
    assert not PROXIES.is_trusted(ipaddress.ip_address("::1"))


@settings(max_examples=400, deadline=None)
@given(
    peer=st.one_of(st.just("10.0.0.1"), st.just("203.0.113.1"), st.text(max_size=20)),
    forwarded=st.text(max_size=80),
    xff=st.text(max_size=80),
)
def test_resolve_never_raises_and_returns_an_address_or_the_peer(
    peer: str, forwarded: str, xff: str
) -> None:
    got = PROXIES.resolve(peer, h(forwarded=forwarded, x_forwarded_for=xff))
    assert got == peer or parse_ip(got or "") is not None
    # An untrusted peer always stays itself.
    assert PROXIES.resolve("203.0.113.1", h(forwarded=forwarded, x_forwarded_for=xff)) == (
        "203.0.113.1"
    )
