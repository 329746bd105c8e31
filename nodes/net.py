"""Outgoing HTTP for nodes: the SSRF guard, pinned addresses, redirects, body caps.

Every hop's host is resolved, each address checked, and the request sent to the checked
address itself (Host header and TLS SNI keep the name), so a DNS answer that changes between
the check and the connection (rebinding) cannot reach a refused address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

import httpx

from flowloom.graphs.errors import NodeError
from flowloom.graphs.redact import redact_text, redact_url
from flowloom.nodes.services import NodeSettings

MAX_REDIRECTS = 5
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
RETRIABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RedactUrls(logging.Filter):
    """Redacts the URLs that httpx logs (`HTTP Request: GET <url> ...`) at INFO level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_url(a) if isinstance(a, httpx.URL)
                                else redact_text(a) if isinstance(a, str) else a
                                for a in record.args)
        record.msg = redact_text(str(record.msg))
        return True


logging.getLogger("httpx").addFilter(RedactUrls())


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    allow_private: bool = False
    allow_hosts: frozenset[str] = frozenset()  # "host:port" exceptions to the guard
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    @classmethod
    def from_settings(cls, settings: NodeSettings) -> HttpPolicy:
        hosts = settings.http_allow_hosts or ""
        return cls(
            allow_private=settings.http_allow_private,
            allow_hosts=frozenset(h.strip() for h in hosts.split(",") if h.strip()),
            max_response_bytes=settings.http_max_response_bytes,
        )


class BlockedAddress(NodeError):
    pass


def _networks(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# The IANA special-purpose registries, written out rather than left to `is_global`,
# whose answer changes between Python versions (3.11 calls fec0::1 and ::7f00:1 global).
# Blocks with a few globally reachable anycast exceptions (192.0.0.0/24, 2001::/23) are
# refused whole: no workflow needs PCP or TURN anycast.
REFUSED_V4 = _networks(
    "0.0.0.0/8",        # "this network"
    "10.0.0.0/8",       # private
    "100.64.0.0/10",    # shared address space (CGNAT; cloud metadata such as 100.100.100.200)
    "127.0.0.0/8",      # loopback
    "169.254.0.0/16",   # link-local (cloud metadata 169.254.169.254)
    "172.16.0.0/12",    # private
    "192.0.0.0/24",     # IETF protocol assignments
    "192.0.2.0/24",     # documentation (TEST-NET-1)
    "192.88.99.0/24",   # 6to4 relay anycast (deprecated): relays into other networks
    "192.168.0.0/16",   # private
    "198.18.0.0/15",    # benchmarking
    "198.51.100.0/24",  # documentation (TEST-NET-2)
    "203.0.113.0/24",   # documentation (TEST-NET-3)
    "224.0.0.0/4",      # multicast
    "240.0.0.0/4",      # reserved, and the limited broadcast 255.255.255.255
)
GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")  # everything else is special or unassigned
REFUSED_V6 = _networks(
    "::/96",            # IPv4-compatible (deprecated), with :: and ::1
    "::ffff:0:0/96",    # IPv4-mapped: an IPv4 address in disguise
    "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
    "64:ff9b::/96",     # NAT64 well-known prefix: a gateway maps it onto any IPv4 address
    "64:ff9b:1::/48",   # NAT64 local use
    "100::/64",         # discard-only
    "100:0:0:1::/64",   # dummy prefix
    "2001::/23",        # IETF protocol assignments (Teredo, benchmarking, ORCHID...)
    "2001:db8::/32",    # documentation
    "3fff::/20",        # documentation
    "5f00::/16",        # SRv6 SIDs
    "fc00::/7",         # unique local
    "fe80::/10",        # link-local
    "fec0::/10",        # site-local (deprecated)
    "ff00::/8",         # multicast
)
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


def is_public(address: str) -> bool:
    """Whether `address` may be called: globally reachable unicast, nothing that a
    gateway could translate into a refused address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv4Address):
        return not any(ip in net for net in REFUSED_V4) and ip.is_global
    if ip.scope_id is not None or ip not in GLOBAL_UNICAST_V6:
        return False
    if any(ip in net for net in REFUSED_V6):
        return False
    if ip in SIX_TO_FOUR:  # 6to4 carries an IPv4 address: judge that one
        return ip.sixtofour is not None and is_public(str(ip.sixtofour))
    return True


async def resolve(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NodeError(f"cannot resolve host `{host}`: {exc.strerror}", retriable=True,
                        kind="DNSError") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_address(url: httpx.URL, policy: HttpPolicy) -> str:
    """The address to connect to for `url`, refusing non-public ones unless allowed."""
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    if url.scheme not in ("http", "https"):
        raise NodeError(f"only http and https URLs are allowed, got `{url.scheme}`")
    addresses = await resolve(host, port)
    if policy.allow_private or f"{host}:{port}" in policy.allow_hosts:
        return addresses[0]
    for address in addresses:
        if not is_public(address):
            raise BlockedAddress(
                f"refused to call {url.scheme}://{host}:{port}: it resolves to {address}, a "
                "loopback, private, link-local or metadata address (set "
                "FLOWLOOM_HTTP_ALLOW_PRIVATE=true to allow it)", kind="BlockedAddress")
    return addresses[0]


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import UTC, datetime
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    url: str

    def parsed(self) -> Any:
        import json
        content_type = self.headers.get("content-type", "")
        text = self.body.decode(errors="replace")
        if "json" in content_type:
            try:
                return json.loads(text) if text else None
            except json.JSONDecodeError:
                return text
        return text


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise NodeError(f"response body exceeds {limit:,} bytes "
                            "(FLOWLOOM_HTTP_MAX_RESPONSE_BYTES)", kind="ResponseTooLarge")
        chunks.append(chunk)
    return b"".join(chunks)


CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
HOST_HEADER = frozenset({"host"})
BODY_HEADERS = frozenset({"content-type", "content-encoding", "content-language",
                          "content-location", "content-length"})


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


def _without(headers: dict[str, str], names: frozenset[str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in names}


async def send(client: httpx.AsyncClient, method: str, url: str, *, policy: HttpPolicy,
               headers: Mapping[str, str] | None = None, params: Any = None,
               json_body: Any = None, content: Any = None,
               sensitive_headers: Iterable[str] = ()) -> Reply:
    """One request, following redirects itself so that every hop passes the guard.
    The node's `timeout_s` bounds the whole call; the client's own timeout bounds each hop.
    A redirect to another origin drops the credential headers, `sensitive_headers` and
    the body; 303, and 301/302 after a POST, continue as a GET without body (as browsers)."""
    target = httpx.URL(url)
    if params:
        target = target.copy_merge_params(params)
    send_headers = dict(headers or {})
    secret_names = CREDENTIAL_HEADERS | {h.lower() for h in sensitive_headers}
    for _ in range(MAX_REDIRECTS + 1):
        address = await checked_address(target, policy)
        pinned = target.copy_with(host=address)
        # The Host is the URL's, whatever the caller sent: two would make h11 refuse the
        # request, and another name would reach a virtual host that was never checked.
        hop_headers = {**_without(send_headers, HOST_HEADER), "Host": target.netloc.decode()}
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        request = client.build_request(method, pinned, headers=hop_headers, json=json_body,
                                       content=content, extensions=extensions)
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except httpx.TimeoutException:
            raise NodeError(f"{method} {redact_url(target)} timed out", kind="TimeoutError",
                            retriable=True) from None
        except httpx.TransportError as exc:
            raise NodeError(f"{method} {redact_url(target)} failed: {type(exc).__name__}: "
                            f"{redact_text(str(exc))}", kind="NetworkError",
                            retriable=True) from None
        try:
            if response.is_redirect and "location" in response.headers:
                status, following = response.status_code, target.join(
                    response.headers["location"])
                if (status == 303 and method != "HEAD") or (status in (301, 302)
                                                             and method == "POST"):
                    method, json_body, content = "GET", None, None
                    send_headers = _without(send_headers, BODY_HEADERS)
                if _origin(following) != _origin(target):
                    # Once dropped, they stay dropped, even back on the first origin.
                    send_headers = _without(send_headers, secret_names | BODY_HEADERS)
                    json_body = content = None
                target = following
                continue
            body = await _read_capped(response, policy.max_response_bytes)
        finally:
            await response.aclose()
        return Reply(response.status_code, dict(response.headers), body, str(target))
    raise NodeError(f"more than {MAX_REDIRECTS} redirects from {redact_url(url)}",
                    kind="TooManyRedirects")


def body_summary(reply: Reply, limit: int = 200) -> str:
    """What a person needs of an error body, on one line: a JSON error's message, an HTML
    page's title, or a text body's first line; never the raw page."""
    text = reply.body[:65536].decode(errors="replace")
    kind = reply.headers.get("content-type", "").split(";")[0].strip().lower()
    summary = ""
    if kind.endswith("json"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            found = next((data[k] for k in ("message", "error", "detail", "title")
                          if data.get(k)), data)
            if isinstance(found, dict):
                found = found.get("message") or found
            summary = found if isinstance(found, str) else json.dumps(found)
        elif data is not None:
            summary = json.dumps(data)
    elif "html" in kind or text.lstrip()[:1] == "<":
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        summary = title.group(1) if title else re.sub(r"<[^>]+>", " ", text)
    if not summary:
        summary = text
    line = next((part.strip() for part in summary.splitlines() if part.strip()), "")
    line = re.sub(r"\s+", " ", line)
    return line if len(line) <= limit else line[:limit - 1] + "…"


def status_error(reply: Reply, method: str, node_id: str | None = None) -> NodeError:
    """The error for an unexpected status: retriable for 408, 429 and 5xx."""
    retriable = reply.status in RETRIABLE_STATUS or reply.status >= 500
    try:
        reason = f" {HTTPStatus(reply.status).phrase}"
    except ValueError:
        reason = ""
    snippet = body_summary(reply)
    return NodeError(f"HTTP {reply.status}{reason} from {method} {redact_url(reply.url)}"
                     + (f": {snippet}" if snippet else ""),
                     node_id=node_id, kind="HTTPStatusError", retriable=retriable,
                     retry_after_s=retry_after_seconds(reply.headers.get("retry-after")))
