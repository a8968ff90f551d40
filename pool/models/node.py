from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class Node(models.Model):
    """A host whose supervisor runs local members; it reports in every tick."""

    name = models.SlugField(max_length=64, unique=True)
    address = models.CharField(max_length=255, default="127.0.0.1", help_text="Where its members listen")
    pid = models.IntegerField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

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
