"""The SSRF guard's address classifier against the IANA special-purpose registries, and
the promise that the connection goes to the address that was checked."""

from __future__ import annotations

import ipaddress

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowloom.nodes.net import HttpPolicy, _networks, is_public, redact_text, redact_url, send
from tests.servers import FlakyServer

# IANA IPv4 and IPv6 Special-Purpose Address Registries (2025), one representative or
# more per block, and what the guard answers. Deliberate departures from the registry's
# "globally reachable" column: the anycast exceptions inside 192.0.0.0/24 and 2001::/23,
# NAT64 64:ff9b::/96 and 6to4 with a non-public IPv4 inside are refused.
TABLE: list[tuple[str, str, bool]] = [
    ("0.0.0.0/8 this network", "0.0.0.0", False),
    ("0.0.0.0/8 this network", "0.1.2.3", False),
    ("10.0.0.0/8 private", "10.0.0.1", False),
    ("10.0.0.0/8 private", "10.255.255.254", False),
    ("100.64.0.0/10 shared", "100.64.0.1", False),
    ("100.64.0.0/10 shared (cloud metadata)", "100.100.100.200", False),
    ("100.64.0.0/10 shared", "100.127.255.254", False),
    ("127.0.0.0/8 loopback", "127.0.0.1", False),
    ("127.0.0.0/8 loopback", "127.255.0.9", False),
    ("169.254.0.0/16 link-local (metadata)", "169.254.169.254", False),
    ("172.16.0.0/12 private", "172.16.0.1", False),
    ("172.16.0.0/12 private", "172.31.255.254", False),
    ("192.0.0.0/24 IETF assignments", "192.0.0.1", False),
    ("192.0.0.0/24 IETF assignments (DS-Lite)", "192.0.0.2", False),
    ("192.0.0.9/32 PCP anycast", "192.0.0.9", False),
    ("192.0.0.10/32 TURN anycast", "192.0.0.10", False),
    ("192.0.0.170/32 NAT64 discovery", "192.0.0.170", False),
    ("192.0.2.0/24 documentation", "192.0.2.1", False),
    ("192.31.196.0/24 AS112", "192.31.196.1", True),
    ("192.52.193.0/24 AMT", "192.52.193.1", True),
    ("192.88.99.0/24 6to4 relay anycast", "192.88.99.1", False),
    ("192.168.0.0/16 private", "192.168.1.1", False),
    ("192.175.48.0/24 direct delegation AS112", "192.175.48.1", True),
    ("198.18.0.0/15 benchmarking", "198.18.0.1", False),
    ("198.18.0.0/15 benchmarking", "198.19.255.254", False),
    ("198.51.100.0/24 documentation", "198.51.100.7", False),
    ("203.0.113.0/24 documentation", "203.0.113.9", False),
    ("224.0.0.0/4 multicast", "224.0.0.1", False),
    ("224.0.0.0/4 multicast", "239.255.255.250", False),
    ("240.0.0.0/4 reserved", "240.0.0.1", False),
    ("255.255.255.255/32 limited broadcast", "255.255.255.255", False),
    ("public", "8.8.8.8", True),
    ("public", "1.1.1.1", True),
    ("public", "93.184.215.14", True),
    ("::1/128 loopback", "::1", False),
    ("::/128 unspecified", "::", False),
    ("::/96 IPv4-compatible", "::7f00:1", False),
    ("::/96 IPv4-compatible", "::8.8.8.8", False),
    ("::ffff:0:0/96 IPv4-mapped", "::ffff:127.0.0.1", False),
    ("::ffff:0:0/96 IPv4-mapped", "::ffff:8.8.8.8", False),
    ("::ffff:0:0:0/96 IPv4-translated", "::ffff:0:7f00:1", False),
    ("64:ff9b::/96 NAT64", "64:ff9b::7f00:1", False),
    ("64:ff9b::/96 NAT64", "64:ff9b::808:808", False),
    ("64:ff9b:1::/48 local NAT64", "64:ff9b:1::a00:1", False),
    ("100::/64 discard-only", "100::1", False),
    ("100:0:0:1::/64 dummy prefix", "100:0:0:1::1", False),
    ("2001::/23 IETF assignments", "2001:1::1", False),
    ("2001::/32 Teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
    ("2001:2::/48 benchmarking", "2001:2::1", False),
    ("2001:3::/32 AMT", "2001:3::1", False),
    ("2001:4:112::/48 AS112", "2001:4:112::1", False),
    ("2001:20::/28 ORCHIDv2", "2001:20::1", False),
    ("2001:30::/28 drone remote ID", "2001:30::1", False),
    ("2001:db8::/32 documentation", "2001:db8::1", False),
    ("2002::/16 6to4 of loopback", "2002:7f00:1::1", False),
    ("2002::/16 6to4 of private", "2002:c0a8:101::1", False),
    ("2002::/16 6to4 of metadata", "2002:a9fe:a9fe::1", False),
    ("2002::/16 6to4 of public", "2002:808:808::1", True),
    ("2620:4f:8000::/48 direct delegation AS112", "2620:4f:8000::1", True),
    ("3fff::/20 documentation", "3fff::1", False),
    ("5f00::/16 SRv6 SIDs", "5f00::1", False),
    ("fc00::/7 unique local", "fc00::1", False),
    ("fc00::/7 unique local", "fd12:3456::1", False),
    ("fe80::/10 link-local", "fe80::1", False),
    ("fe80::/10 link-local, zoned", "fe80::1%1", False),
    ("fec0::/10 site-local", "fec0::1", False),
    ("ff00::/8 multicast", "ff02::1", False),
    ("ff00::/8 multicast", "ff0e::1", False),
    ("outside 2000::/3, unassigned", "4000::1", False),
    ("public", "2606:4700::1111", True),
    ("public", "2001:4860:4860::8888", True),
]


@pytest.mark.parametrize(("block", "address", "public"), TABLE,
                         ids=[f"{a} {b}" for b, a, _ in TABLE])
def test_special_purpose_addresses(block: str, address: str, public: bool) -> None:
    assert is_public(address) is public, block


REFUSED = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/96", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48",
    "100::/64", "100:0:0:1::/64", "2001::/23", "2001:db8::/32", "3fff::/20", "5f00::/16",
    "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
]
PUBLIC = ["1.0.0.0/8", "8.0.0.0/8", "2606:4700::/32", "2a00:1450::/32"]


def inside(cidr: str) -> st.SearchStrategy[str]:
    net = ipaddress.ip_network(cidr)
    make = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
    return st.integers(int(net.network_address), int(net.broadcast_address)).map(
        lambda n: str(make(n)))


def six_to_four(v4: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A 6to4 address carrying the given IPv4 address, with any subnet and host."""
    return st.tuples(v4, st.integers(0, 2**80 - 1)).map(lambda p: str(ipaddress.IPv6Address(
        (0x2002 << 112) | (int(ipaddress.IPv4Address(p[0])) << 80) | p[1])))


REFUSED_V4 = st.one_of([inside(c) for c in REFUSED if ":" not in c])


def test_the_refused_blocks_are_parsed_from_their_cidr_text() -> None:
    """The parser behind REFUSED_V4/REFUSED_V6 (which run it once, at import)."""
    assert _networks("100.64.0.0/10", "64:ff9b::/96") == (
        ipaddress.IPv4Network("100.64.0.0/10"), ipaddress.IPv6Network("64:ff9b::/96"))
    assert _networks() == ()


@given(st.one_of([inside(c) for c in REFUSED]))
def test_every_address_in_a_refused_block_is_refused(address: str) -> None:
    assert not is_public(address)


@given(six_to_four(REFUSED_V4))
def test_6to4_carrying_a_refused_ipv4_address_is_refused(address: str) -> None:
    assert not is_public(address)


@given(st.one_of([inside(c) for c in PUBLIC]))
def test_public_addresses_are_accepted(address: str) -> None:
    assert is_public(address)


@given(six_to_four(inside("8.0.0.0/8")))
def test_6to4_carrying_a_public_ipv4_address_is_accepted(address: str) -> None:
    assert is_public(address)


async def test_the_connection_goes_to_the_checked_address_not_the_name(
        web: tuple[FlakyServer, str]) -> None:
    _, base = web
    port = base.rsplit(":", 1)[1]
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
        reply = await send(client, "GET", f"http://localhost:{port}/echo?key=pin",
                           policy=HttpPolicy(allow_private=True))
    # Connecting by name would let a second DNS answer (rebinding) pick the address.
    assert [r.url.host for r in sent] == ["127.0.0.1"]
    assert reply.parsed()["headers"]["host"] == f"localhost:{port}"
    assert reply.url == f"http://localhost:{port}/echo?key=pin"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:secret@host/x?token=abc", "https://user:***@host/x?token=***"),
    ("https://ghp_token@github.com/o/r", "https://***@github.com/o/r"),
    ("http://h:8080/p?a=1&a=2&b=", "http://h:8080/p?a=***&a=***&b=***"),
    ("http://h/p?justatoken", "http://h/p?***"),
    ("http://h/cb#access_token=abc", "http://h/cb#***"),
    ("http://h/plain", "http://h/plain"),
    ("https://u:p:q@h/", "https://u:***@h/"),  # a colon in the password
    ("http://h/p?sig=YWJj==&x=1", "http://h/p?sig=***&x=***"),  # base64 padding
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(httpx.URL(url)) == shown


def test_an_at_sign_in_a_user_name_leaves_the_password_hidden() -> None:
    # as a user writes it in a workflow; httpx.URL would have escaped it to %40
    assert redact_url("https://me@corp.com:secret@host/x") == "https://me@corp.com:***@host/x"


def test_an_unparseable_url_is_hidden_not_raised() -> None:
    assert redact_url("http://[::1/x?token=abc") == "<unparseable URL>"


def test_redact_text_redacts_every_url_in_it() -> None:
    text = "GET https://u:pw@a/x?k=v failed, then http://b/?t=1 too"
    assert redact_text(text) == "GET https://u:***@a/x?k=*** failed, then http://b/?t=*** too"
