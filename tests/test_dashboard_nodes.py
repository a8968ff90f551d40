"""Nodes on the members page: a node whose supervisor stops reporting is shown as lost and
its members as unreachable, not silently ready."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from pool.models import Member, Node, states

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_nodes(settings):
    settings.VIBEADMIN_NODE_LOST_AFTER_S = 15
    now = timezone.now()
    Node.objects.create(name="gpu1", address="10.0.0.1", pid=11, last_seen_at=now)
    Node.objects.create(name="gpu2", address="10.0.0.2", pid=22, last_seen_at=now - timedelta(seconds=60))
    Member.objects.create(name="m1", node="gpu1", state=states.READY, port=9001)
    Member.objects.create(name="m2", node="gpu2", state=states.READY, port=9002)


def test_a_member_of_a_lost_node_shows_as_unreachable(admin_client, two_nodes):
    html = admin_client.get(reverse("members")).content.decode()
    m1 = html[html.index('data-member="m1"') : html.index('data-member="m2"')]
    m2 = html[html.index('data-member="m2"') :]
    assert 'data-state="ready"' in m1
    assert 'data-state="unreachable"' in m2


def test_the_nodes_table_says_which_node_is_lost(admin_client, two_nodes):
    html = admin_client.get(reverse("members")).content.decode()
    gpu2 = html[html.index('data-node="gpu2"') :]
    gpu1 = html[html.index('data-node="gpu1"') : html.index('data-node="gpu2"')]
    assert "lost" in gpu2[:400]
    assert "reporting" in gpu1
