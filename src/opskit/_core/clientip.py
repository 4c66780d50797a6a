"""The client's address behind trusted reverse proxies.

With no trusted proxies the socket peer is the client. Otherwise the chain of
addresses in ``Forwarded`` (RFC 7239) or ``X-Forwarded-For`` is read right to
left, starting from the peer, and the first hop that is not a trusted proxy is
the client: entries to its left were written by whoever sent the request and
cannot be believed. A malformed header never raises; the peer is returned.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

from opskit._core.http import Headers

__all__ = ["ClientIP", "IPAddress", "IPNetwork", "parse_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
HeaderName = Literal["forwarded", "x-forwarded-for"]

_MAX_HOPS = 64


class _Malformed(Exception):
    pass


def parse_ip(value: str) -> IPAddress | None:
    """An address from ``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]:80``; None if not one."""
    value = value.strip().strip('"').strip()
    if not value:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        rest = value[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit()):
            return None
        value = value[1:end]
    elif value.count(":") == 1:  # IPv4 with a port
        host, _, port = value.partition(":")
        if not (port.isascii() and port.isdigit()):
            return None
        value = host
    try:
        addr = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _forwarded_for(values: list[str]) -> list[str]:
    hops: list[str] = []
    for value in values:
        for element in _split_quoted(value, ","):
            found = None
            for pair in _split_quoted(element, ";"):
                name, eq, val = pair.partition("=")
                if not eq:
                    if pair.strip():
                        raise _Malformed
                    continue
                if name.strip().lower() == "for":
                    found = val.strip()
            if found is None:
                raise _Malformed  # a hop without for= breaks the chain
            hops.append(found)
    return hops


def _split_quoted(value: str, sep: str) -> list[str]:
    parts: list[str] = []
    buf: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    if quoted:
        raise _Malformed
    parts.append("".join(buf))
    return [p for p in (p.strip() for p in parts) if p]


class ClientIP:
    """Resolves the client address of a request.

    ``trusted_proxies`` are CIDR networks (``"10.0.0.0/8"``, ``"::1/128"``) of
    the proxies in front of the service. ``headers`` is the order of headers to
    consult: the first one present is used.
    """

    __slots__ = ("_headers", "_trusted")

    def __init__(
        self,
        trusted_proxies: Iterable[str | IPNetwork] = (),
        *,
        headers: Sequence[HeaderName] = ("forwarded", "x-forwarded-for"),
    ) -> None:
        nets: list[IPNetwork] = []
        for net in trusted_proxies:
            try:
                nets.append(ipaddress.ip_network(net, strict=False))
            except ValueError:
                raise ValueError(f"not a network in CIDR form: {net!r}") from None
        self._trusted = tuple(nets)
        for h in headers:
            if h not in ("forwarded", "x-forwarded-for"):
                raise ValueError(f"unsupported client address header: {h!r}")
        self._headers = tuple(headers)

    @property
    def trusted_proxies(self) -> tuple[IPNetwork, ...]:
        return self._trusted

    def is_trusted(self, addr: IPAddress) -> bool:
        return any(addr.version == n.version and addr in n for n in self._trusted)

    def resolve(self, peer: str | None, headers: Headers | Callable[[], Headers]) -> str | None:
        """The client address as a string, or the peer (possibly None) when unknown.

        ``headers`` may be a function making them: it is called only when the peer
        is a trusted proxy.
        """
        if not self._trusted or peer is None:
            return peer
        current = parse_ip(peer)
        if current is None or not self.is_trusted(current):
            return peer
        if not isinstance(headers, Headers):
            headers = headers()
        try:
            hops = self._hops(headers)
        except _Malformed:
            return peer
        if hops is None:
            return peer
        for raw in reversed(hops):
            hop = parse_ip(raw)
            if hop is None:
                return peer  # "unknown", an obfuscated id, or garbage
            current = hop
            if not self.is_trusted(hop):
                return str(hop)
        return str(current)  # every hop trusted: the left-most is the client

    def _hops(self, headers: Headers) -> list[str] | None:
        for name in self._headers:
            values = headers.getall(name)
            if not values:
                continue
            if name == "forwarded":
                hops = _forwarded_for(values)
            else:
                hops = [h for v in values for h in (p.strip() for p in v.split(","))]
                if any(not h for h in hops):
                    raise _Malformed
            if not hops or len(hops) > _MAX_HOPS:
                raise _Malformed
            return hops
        return None
