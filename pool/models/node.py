from django.db import models


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
