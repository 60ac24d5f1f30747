"""Outbound URLs a user gave us (webhook endpoints): only public hosts, checked at every use (SSRF).

A URL passes when every address its host resolves to is globally routable: no loopback, private
(RFC 1918, unique-local), link-local (169.254/16, the cloud metadata address, fe80::/10),
carrier-grade NAT, multicast, reserved, documentation or unspecified address — including such an
IPv4 address dressed as IPv6 (IPv4-mapped ``::ffff:127.0.0.1``, 6to4 ``2002::/16``, Teredo, NAT64
``64:ff9b::/96``). It is checked when the URL is saved and again right before each delivery, since a
name may resolve elsewhere later (DNS rebinding); the delivery then connects to an address that
passed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeUrl(ValueError):
    """The URL may not receive our requests; the message says why (safe to show an admin)."""


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo client, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast, and so is any IPv4 address it embeds."""
    if address.is_multicast or not address.is_global:
        return False
    inner = embedded_ipv4(address)
    return inner is None or is_public(inner)


@dataclass(frozen=True)
class CheckedUrl:
    url: str
    host: str
    port: int
    addresses: tuple[str, ...]  # every address the host resolved to, all of which passed


def check_url(url: str, *, allow_private: bool = False, require_https: bool = False) -> CheckedUrl:
    """Parse and resolve ``url``; ``UnsafeUrl`` unless it may receive requests."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"Not a valid URL: {exc}") from exc
    allowed = ("https",) if require_https else ("http", "https")
    if parts.scheme not in allowed:
        raise UnsafeUrl(f"The URL must use {' or '.join(s + '://' for s in allowed)}")
    if not parts.hostname:
        raise UnsafeUrl("The URL has no host")
    if parts.username or parts.password:
        raise UnsafeUrl("The URL must not carry credentials")
    port = port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(parts.hostname, port)
    if not allow_private:
        for text in addresses:
            if not is_public(ipaddress.ip_address(text)):
                raise UnsafeUrl(f"The host {parts.hostname} resolves to a non-public address ({text})")
    return CheckedUrl(url=url, host=parts.hostname, port=port, addresses=addresses)


def resolve(host: str, port: int) -> tuple[str, ...]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"The host {host} does not resolve") from exc
    found = tuple(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    if not found:
        raise UnsafeUrl(f"The host {host} does not resolve")
    return found
