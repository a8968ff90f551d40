"""Which address a request came from, believing X-Forwarded-For only from our own proxies
(VIBEADMIN_TRUSTED_PROXIES). The pages (login throttling) and the gateway (ip_hash, the
solve page's caps) both ask; anyone can send the header, so no other sender is believed.

And which network it counts as (`client_network`): per-address caps and throttles key on
an IPv6 /64 (VIBEADMIN_IPV6_PREFIX), not on one of its 2^64 addresses, each of which the
same host may use.
"""

from __future__ import annotations

import functools
import ipaddress

from django.conf import settings


def client_address(peer: str, forwarded: str) -> str:
    """The nearest address in X-Forwarded-For that is not one of our proxies, when the peer
    is one of them; else the peer. `forwarded` is every X-Forwarded-For line joined with
    commas, as Django's META holds them: a proxy that adds a line of its own rather than
    appending to the client's must not let the client's line be read as the proxy's."""
    if not forwarded or not is_trusted_proxy(peer):
        return peer
    for address in reversed([a.strip() for a in forwarded.split(",") if a.strip()]):
        if not is_trusted_proxy(address):
            return address
    return peer


def client_network(address: str) -> str:
    """What per-address limits count as one client: an IPv4 address as it is (an IPv6
    address mapping one, as that IPv4 address); an IPv6 address as its network of
    VIBEADMIN_IPV6_PREFIX bits; anything unparseable as given."""
    return _network(address, settings.VIBEADMIN_IPV6_PREFIX)


@functools.lru_cache(maxsize=4096)
def _network(address: str, prefix: int) -> str:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # a zone (fe80::1%eth0) is no network
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, prefix), strict=False))


def is_trusted_proxy(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    # On a dual-stack bind an IPv4 proxy's peer address reads ::ffff:10.0.0.2: it is still 10.0.0.2.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in _networks(tuple(settings.VIBEADMIN_TRUSTED_PROXIES)))


@functools.cache
def _networks(proxies: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Parsed once per setting, not on every request."""
    return [ipaddress.ip_network(net, strict=False) for net in proxies]
