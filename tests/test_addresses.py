"""Client addresses with plain calls: keys, and the rightmost untrusted forwarded hop."""

from __future__ import annotations

import pytest

from pichat.addresses import address_key, client_address, parse_networks

TRUSTED = parse_networks(["127.0.0.1", "10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("peer", "values", "expected"),
    [
        # An untrusted peer: its headers prove nothing.
        ("198.51.100.1", ["203.0.113.9"], "198.51.100.1"),
        # A trusted proxy without the header: the proxy itself.
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.9"], "203.0.113.9"),
        # A forged entry left of the real one is skipped.
        ("127.0.0.1", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),
        # Trusted hops on the right are passed over; repeated header lines join in order.
        ("127.0.0.1", ["6.6.6.6", "203.0.113.9, 10.1.2.3"], "203.0.113.9"),
        # Only trusted hops: the leftmost of them.
        ("127.0.0.1", ["10.0.0.5, 10.0.0.6"], "10.0.0.5"),
        # Garbage stops the walk at the trusted hop that wrote it.
        ("127.0.0.1", ["203.0.113.9, junk, 10.0.0.6"], "10.0.0.6"),
        ("127.0.0.1", ["junk"], "127.0.0.1"),
        ("::1", ["2001:db8::7"], "2001:db8::7"),
    ],
)
def test_x_forwarded_for(peer: str, values: list[str], expected: str) -> None:
    """X-Forwarded-For is read only from a trusted peer, rightmost untrusted hop first."""
    assert client_address(peer, "x-forwarded-for", values, TRUSTED) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["for=192.0.2.60;proto=http;by=203.0.113.43"], "192.0.2.60"),
        (['for="[2001:db8:cafe::17]:4711"'], "2001:db8:cafe::17"),
        (["for=6.6.6.6, for=192.0.2.60:1234"], "192.0.2.60"),
        (["for=192.0.2.60, for=10.0.0.1"], "192.0.2.60"),
        (["for=_hidden"], "127.0.0.1"),
    ],
)
def test_forwarded(values: list[str], expected: str) -> None:
    """Forwarded for= (RFC 7239), ports and brackets removed."""
    assert client_address("127.0.0.1", "forwarded", values, TRUSTED) == expected


def test_no_trusted_proxies_means_the_peer() -> None:
    """With no trusted proxies every header is ignored."""
    assert client_address("127.0.0.1", "x-forwarded-for", ["203.0.113.9"], ()) == "127.0.0.1"


def test_parse_networks_names_a_bad_entry() -> None:
    """A bad entry is a ValueError naming it."""
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        parse_networks(["10.0.0.0/33"])


def test_address_key_groups_ipv6_by_64() -> None:
    """IPv6 counts by /64, IPv4-mapped as IPv4."""
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"


def test_address_key_answers_the_same_when_asked_again() -> None:
    """Keys are kept for addresses seen lately: a second answer is the first one."""
    for address in ("192.0.2.7", "2001:db8::1", "::ffff:192.0.2.7", "not an address"):
        assert address_key(address) == address_key(address)
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff") == "2001:db8::/64"
    assert address_key.cache_info().hits > 0
