"""Rollouts as an operator asks for them: started, promoted, aborted. Each only changes
desired state (a Rollout row, audited); the supervisor's reconcile loop moves the members
one step per tick (pool/services/rollout_machine.py)."""

from __future__ import annotations

from django.db import transaction

from pool.models import ApiKey, Member, Model, PoolEvent, PoolSettings, Rollout, states
from pool.models import rollout_states as rs
from pool.services import ActionError, audit, events, refused_as_action_error

PROMOTE, ROLL_BACK = "promote", "roll back"


def source_members(source: Model, primary: Model | None):
    """The local members a rollout from `source` moves: those wanting to run on it (a member
    from before the library, with no model, serves the primary)."""
    members = Member.objects.filter(
        kind=states.LOCAL, should_run=True, remove_requested=False, restart_requested=False
    ).order_by("id")
    if primary is not None and source.pk == primary.pk:
        return members.filter(model__isnull=True) | members.filter(model=source)
    return members.filter(model=source)


@transaction.atomic
def rollout_start(
    *, target: Model, canary_percent: float = 0.0, gate: bool = False, tenant: ApiKey | None = None
) -> Rollout:
    """Move every member of the primary model to `target`, one at a time; with a canary
    first (PERCENT of the primary alias's traffic, or of one key's), which `gate` decides on."""
    if Rollout.objects.active().exists():
        raise ActionError("a rollout is under way: wait for it, or `pool rollout --abort` it")
    primary = PoolSettings.load().primary_model
    if primary is None:
        raise ActionError("the pool has no primary model yet: start vibeadmin once first")
    if target.pk == primary.pk:
        raise ActionError(f"{target.name} is the primary model already")
    count = source_members(primary, primary).count()
    if count == 0:
        raise ActionError(f"no local member serves {primary.name}: nothing to roll")
    rollout = Rollout(
        source=primary,
        target=target,
        members_total=count,
        canary_percent=canary_percent,
        canary_tenant=tenant,
        gate=gate,
        reason="waiting for the supervisor's next tick",
    )
    with refused_as_action_error():
        audit.save_row(rollout)
    how = f"canary {canary_percent:g}%" + (" gated" if gate else "") if canary_percent else "rolling"
    events.record(
        PoolEvent.ACTION, f"rollout {rollout.pk}: {primary.name} -> {target.name} ({how}) requested"
    )
    return rollout


def active_rollout() -> Rollout:
    rollout = Rollout.objects.active().select_related("source", "target").first()
    if rollout is None:
        raise ActionError("no rollout is under way")
    return rollout


def rollout_abort(*, rollout: Rollout) -> None:
    """Back to where it started: the new model's members replaced by the old one's again."""
    audit.update_row(rollout, abort_requested=True)
    events.record(PoolEvent.ACTION, f"rollout {rollout.pk}: abort requested")


def rollout_decide(*, rollout: Rollout, verdict: str, why: str = "") -> None:
    """A canary promoted (the rest rolled) or rolled back: the gate's verdict, or the operator's."""
    if rollout.state != rs.CANARY:
        raise ActionError(f"rollout {rollout.pk} is {rollout.state}, not a canary waiting for a verdict")
    if verdict not in (PROMOTE, ROLL_BACK):
        raise ActionError(f"a verdict is {PROMOTE!r} or {ROLL_BACK!r}")
    audit.update_row(rollout, gate_verdict=verdict, note=why)
    Rollout.objects.filter(pk=rollout.pk).update(reason=why or verdict)
    rollout.reason = why or verdict


def rollout_gate_figures(rollout: Rollout, **figures) -> None:
    """The gate's progress (observed state, written by its process): each side's answers
    and the figures the Models page shows."""
    Rollout.objects.filter(pk=rollout.pk).update(**figures)
