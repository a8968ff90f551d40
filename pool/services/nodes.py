"""Nodes: each supervisor's heartbeat (observed state), by which the gateways tell a lost
node's members from routable ones."""

from __future__ import annotations

import os

from django.conf import settings
from django.utils import timezone

from pool.models import Node


def heartbeat(name: str) -> None:
    Node.objects.update_or_create(
        name=name,
        defaults={
            "last_seen_at": timezone.now(),
            "pid": os.getpid(),
            "address": settings.VIBEADMIN_ADVERTISE_HOST,
        },
    )
