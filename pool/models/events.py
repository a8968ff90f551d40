from django.db import models


class PoolEvent(models.Model):
    """Something that happened to the pool, kept for operators: a state change, a scaling decision."""

    STATE = "state"
    ACTION = "action"
    SCALING = "scaling"
    KIND_CHOICES = [(STATE, "state change"), (ACTION, "operator action"), (SCALING, "autoscaling")]

    kind = models.CharField(max_length=16, choices=KIND_CHOICES)
    member_name = models.CharField(max_length=64, blank=True)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.message
