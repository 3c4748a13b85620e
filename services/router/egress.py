"""Which upstream base URLs an admin may set: public addresses only, unless allowed.

A base URL whose host is, or resolves to, a private, loopback, link-local, unspecified
or otherwise non-global address is refused (so the admin API cannot be used to reach the
router's own network, or a cloud metadata service), unless the operator allows private
upstreams (`allow_private_upstreams: true` in apirelay.yaml, or
APIRELAY_ALLOW_PRIVATE_UPSTREAMS=1). Channels of the operator's own config file and the
zero-config channels are trusted and never checked. Host names are resolved with the
system resolver, which also reads the numeric forms (`2130706433`, `0x7f.1`) that
browsers and curl accept. The check runs when a channel is created or changed; the
upstream calls themselves never follow redirects (see providers/http.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ALLOW_ENV = "APIRELAY_ALLOW_PRIVATE_UPSTREAMS"
ALLOW_KEY = "allow_private_upstreams"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Host name to the addresses it resolves to; OSError when it does not resolve.
Resolver = Callable[[str], Awaitable[list[str]]]


class EgressRefused(ValueError):
    """A base URL the router may not call; the message names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


async def system_resolve(host: str) -> list[str]:
    """Every address the system resolver gives for `host`."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def is_public(address: IPAddress) -> bool:
    """Whether `address` is globally routable (IPv4-mapped IPv6 judged as its IPv4)."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return is_public(mapped)
    return address.is_global and not address.is_multicast


class EgressPolicy:
    """Refuses base URLs that reach private networks unless the operator allows them."""

    def __init__(self, allow_private: bool, resolve: Resolver = system_resolve) -> None:
        self.allow_private = allow_private
        self._resolve = resolve

    async def check(self, url: str, field: str = "base_url") -> None:
        """Raise EgressRefused (naming `field`) if `url` may not be called."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise EgressRefused(field, "must be an http or https URL")
        if parts.username is not None or parts.password is not None:
            raise EgressRefused(field, "must not hold credentials; pass keys as keys")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise EgressRefused(field, "has no host")
        if self.allow_private:
            return
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = await self._addresses(host, field)
        if not all(is_public(a) for a in addresses):
            raise EgressRefused(
                field, f"host {host!r} is a private, loopback or link-local address "
                f"(set {ALLOW_KEY}: true or {ALLOW_ENV}=1 to allow it)")

    async def _addresses(self, host: str, field: str) -> list[IPAddress]:
        try:
            resolved = await self._resolve(host)
        except OSError as exc:
            raise EgressRefused(field, f"host {host!r} does not resolve") from exc
        if not resolved:
            raise EgressRefused(field, f"host {host!r} does not resolve")
        # A scoped IPv6 address ("fe80::1%eth0") is link-local whatever its scope.
        return [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolved]


def allow_private(environ: Mapping[str, str], config_path: str | Path) -> bool:
    """APIRELAY_ALLOW_PRIVATE_UPSTREAMS=1, else `allow_private_upstreams` of the file."""
    if environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes"):
        return True
    try:
        raw: Any = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False  # the config loader reports an unreadable file itself
    return isinstance(raw, dict) and raw.get(ALLOW_KEY) is True
