"""Which address a request came from, believing X-Forwarded-For only from our own proxies
(VIBEADMIN_TRUSTED_PROXIES). The pages (login throttling) and the gateway (ip_hash, the
solve page's caps) both ask; anyone can send the header, so no other sender is believed."""

from __future__ import annotations

import functools
import ipaddress

from django.conf import settings


def client_address(peer: str, forwarded: str) -> str:
    """The nearest address in X-Forwarded-For that is not one of our proxies, when the peer
    is one of them; else the peer."""
    if not forwarded or not is_trusted_proxy(peer):
        return peer
    for address in reversed([a.strip() for a in forwarded.split(",") if a.strip()]):
        if not is_trusted_proxy(address):
            return address
    return peer


def is_trusted_proxy(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _networks(tuple(settings.VIBEADMIN_TRUSTED_PROXIES)))


@functools.cache
def _networks(proxies: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Parsed once per setting, not on every request."""
    return [ipaddress.ip_network(net, strict=False) for net in proxies]
