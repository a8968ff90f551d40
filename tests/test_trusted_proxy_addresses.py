"""A trusted proxy is trusted however the socket spells its address: on a dual-stack bind
(`::`) an IPv4 peer arrives as ::ffff:10.0.0.2. Read as an untrusted peer, the proxy's
own address became every student's, one network sharing one set of caps."""

from __future__ import annotations

from pool.proxies import client_address, client_network, is_trusted_proxy


def test_an_ipv4_mapped_peer_of_a_trusted_network_is_a_trusted_proxy(settings):
    settings.VIBEADMIN_TRUSTED_PROXIES = ["10.0.0.0/8"]

    assert is_trusted_proxy("::ffff:10.0.0.2")
    assert client_address("::ffff:10.0.0.2", "198.51.100.7") == "198.51.100.7"
    assert client_address("::ffff:10.0.0.2", "198.51.100.8") == "198.51.100.8"


def test_a_mapped_address_of_a_proxy_in_the_forwarded_chain_is_skipped_too(settings):
    settings.VIBEADMIN_TRUSTED_PROXIES = ["10.0.0.0/8"]

    assert client_address("10.0.0.2", "198.51.100.7, ::ffff:10.9.9.9") == "198.51.100.7"


def test_a_mapped_address_outside_the_trusted_networks_is_believed_in_nothing(settings):
    settings.VIBEADMIN_TRUSTED_PROXIES = ["10.0.0.0/8"]

    assert not is_trusted_proxy("::ffff:192.0.2.10")
    assert client_address("::ffff:192.0.2.10", "198.51.100.7") == "::ffff:192.0.2.10"
    assert client_network("::ffff:192.0.2.10") == "192.0.2.10"
