from django.db import models


class PoolEvent(models.Model):
    """Something that happened to the pool, kept for operators: a state change, a scaling
    decision, an operator's action, and (kind CHANGE) one field of desired state changed:
    the audit trail (pool/services/audit.py), with who changed it and its old and new values."""

    STATE = "state"
    ACTION = "action"
    SCALING = "scaling"
    CHANGE = "change"
    DENIED = "denied"
    KIND_CHOICES = [
        (STATE, "state change"),
        (ACTION, "operator action"),
        (SCALING, "autoscaling"),
        (CHANGE, "desired state changed"),
        (DENIED, "refused: the role may not"),
    ]

    kind = models.CharField(max_length=16, choices=KIND_CHOICES)
    member_name = models.CharField(max_length=64, blank=True)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Who made it: a user's name, "cli", "autoscaler" or "system"; and which kind of those.
    actor = models.CharField(max_length=150, blank=True, db_index=True)
    actor_kind = models.CharField(max_length=16, blank=True)
    # For CHANGE: what changed ("member m1", "key acme", "pool settings"), which field, and
    # its values as the trail shows them (secrets masked).
    subject = models.CharField(max_length=200, blank=True)
    setting = models.CharField(max_length=64, blank=True, db_index=True)
    old_value = models.TextField(blank=True)
    new_value = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.message
