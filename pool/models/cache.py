from __future__ import annotations

from django.db import models


class CacheEntry(models.Model):
    """One stored answer (pool/gateway/answer_store.py). Shared by every gateway; each keeps
    the entries it used lately in memory in front of this table."""

    key = models.CharField(max_length=64, primary_key=True, help_text="sha256 of what determines the answer")
    model_sha256 = models.CharField(max_length=64, db_index=True, help_text="The model file it came from")
    tenant = models.CharField(max_length=120, help_text="Whose request generated it")
    answer = models.TextField(help_text="The answer as JSON: its deltas, finish reason and token counts")
    completion_tokens = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    generation_s = models.FloatField(default=0.0, help_text="Member-seconds it took to generate")
    created_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(db_index=True, help_text="Last stored or served: least recent goes first")
    hits = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "cached answer"

    def __str__(self) -> str:
        return self.key[:12]
