from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class NodeQuerySet(models.QuerySet):
    def lost(self) -> NodeQuerySet:
        """Nodes whose supervisor is not reporting: never seen, or not for NODE_LOST_AFTER_S.
        Their members' stored states are stale, so nothing routes to them."""
        return self.filter(
            models.Q(last_seen_at__isnull=True) | models.Q(last_seen_at__lt=Node.lost_before())
        )

    def lost_names(self) -> set[str]:
        return set(self.lost().values_list("name", flat=True))


class Node(models.Model):
    """A host whose supervisor runs local members; it reports in every tick."""

    name = models.SlugField(max_length=64, unique=True)
    address = models.CharField(max_length=255, default="127.0.0.1", help_text="Where its members listen")
    pid = models.IntegerField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def lost_before() -> datetime:
        """A node not seen since then has lost its supervisor."""
        return timezone.now() - timedelta(seconds=settings.VIBEADMIN_NODE_LOST_AFTER_S)

    def is_lost(self) -> bool:
        return self.last_seen_at is None or self.last_seen_at < self.lost_before()
