from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from pool.models import rollout_states as rs
from pool.models.apikey import ApiKey
from pool.models.library import Model


class RolloutQuerySet(models.QuerySet):
    def active(self) -> RolloutQuerySet:
        return self.filter(state__in=rs.ACTIVE_STATES)


class Rollout(models.Model):
    """Moving the primary model's members to another model, one member at a time; with a
    canary first where asked, which a gate on the accuracy check promotes or rolls back."""

    source = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="+")
    target = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=16, choices=rs.CHOICES, default=rs.PENDING)
    members_total = models.PositiveIntegerField(
        default=0, help_text="Members of the source model at the start"
    )
    replaced = models.PositiveIntegerField(default=0)
    # The member being replaced now, and its replacement (names; "" between steps).
    old_member = models.CharField(max_length=64, blank=True)
    new_member = models.CharField(max_length=64, blank=True)
    created_members = models.JSONField(
        default=list, blank=True, help_text="Members this rollout started, by name"
    )
    canary_percent = models.FloatField(
        default=0.0,
        validators=[
            MinValueValidator(0, "--canary takes a percentage: above 0, at most 100"),
            MaxValueValidator(100, "--canary takes a percentage: above 0, at most 100"),
        ],
        help_text="0: no canary, a plain rolling replacement",
    )
    canary_tenant = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    gate = models.BooleanField(default=False)
    gate_pid = models.IntegerField(null=True, blank=True)
    # The gate's figures, written by its job as it goes.
    canary_asked = models.PositiveIntegerField(default=0)
    canary_passed = models.PositiveIntegerField(default=0)
    baseline_asked = models.PositiveIntegerField(default=0)
    baseline_passed = models.PositiveIntegerField(default=0)
    gate_figures = models.JSONField(
        default=dict, blank=True, help_text="Errors and TTFT p95 per side, the test's statistic"
    )
    gate_verdict = models.CharField(max_length=16, blank=True)  # "promote" or "roll back"
    abort_requested = models.BooleanField(default=False)
    surge = models.BooleanField(
        null=True, blank=True, help_text="The last step's choice: start first (surge) or drain first"
    )
    step_at = models.DateTimeField(null=True, blank=True, help_text="When the replacement under way began")
    reason = models.TextField(blank=True, help_text="Why it is where it is, for the operator")
    started_at = models.DateTimeField(auto_now_add=True)
    changed_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RolloutQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.source} -> {self.target}"

    def clean(self) -> None:
        if (self.gate or self.canary_tenant_id is not None) and not self.canary_percent:
            raise ValidationError("--gate and --tenant go with --canary PERCENT")

    @property
    def is_active(self) -> bool:
        return self.state in rs.ACTIVE_STATES

    def facts(self) -> dict:
        return {
            "id": self.pk,
            "source": self.source.name,
            "target": self.target.name,
            "state": self.state,
            "members_total": self.members_total,
            "replaced": self.replaced,
            "replacing": self.old_member or None,
            "replacement": self.new_member or None,
            "canary_percent": self.canary_percent,
            "canary_tenant": self.canary_tenant.name if self.canary_tenant_id else None,
            "gate": self.gate,
            "canary": {"asked": self.canary_asked, "passed": self.canary_passed},
            "baseline": {"asked": self.baseline_asked, "passed": self.baseline_passed},
            "gate_figures": self.gate_figures,
            "verdict": self.gate_verdict or None,
            "reason": self.reason,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }
