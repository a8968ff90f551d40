"""The rollout's state machine, one step per supervisor tick (pool/models/rollout_states.py
holds its edges; docs/architecture.md draws them).

One member at a time: a replacement on the new model is started beside the old member
where memory allows (surge), and the old member is drained only once its replacement is
ready; where memory does not allow, the old member itself is drained and restarted on the
new model (drain first) while the others serve. Requests keep flowing: a drained member
finishes what it has in flight, and waiting requests stay in the gateway's fair line. A
canary is one replacement kept beside the old members, taking its share of traffic, until
a verdict (the gate's, or the operator's) promotes it or rolls it back. Every change is
made as the actor `rollout`, so the audit trail shows each one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psutil
from django.conf import settings
from django.utils import timezone

from pool import webhook
from pool.models import Member, Model, PoolEvent, PoolSettings, Rollout, states
from pool.models import rollout_states as rs
from pool.services import ActionError, audit, events, jobs
from pool.services.members import member_add
from pool.services.rollouts import PROMOTE, ROLL_BACK, source_members

log = logging.getLogger("pool.rollout")
HEADROOM = 512 << 20  # memory left for everything else when a member is started beside the others
# Tests swap this for a function that says yes or no on cue.
RoomCheck = Callable[[Model, Member], bool]


def has_room(model: Model, like: Member) -> bool:
    """Whether a member of `model`, shaped like `like`, fits beside the running ones: its
    weights and KV cache against free VRAM on its GPU (NVML), or free RAM."""
    needed = model.memory_needed(like.n_ctx * (like.wanted_slots() or 1)) + HEADROOM
    if like.gpu is not None and like.n_gpu_layers != 0:
        try:
            import pynvml

            pynvml.nvmlInit()
            free = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(like.gpu)).free
            return int(free) >= needed
        except Exception:  # no NVML here: the RAM check is all there is
            log.info("NVML unavailable; checking RAM for a GPU member")
    return psutil.virtual_memory().available >= needed


class RolloutMachine:
    def __init__(self, *, room: RoomCheck = has_room, launch_gate: Callable[[Rollout], int] | None = None):
        self.room = room
        self.launch_gate = launch_gate or launch_gate_process

    def step(self) -> Rollout | None:
        """One step of the rollout under way, if any; returns it as it now is."""
        rollout = Rollout.objects.active().select_related("source", "target").first()
        if rollout is None:
            return None
        with audit.acting_as(audit.ROLLOUT):
            {
                rs.PENDING: self.step_pending,
                rs.CANARY: self.step_canary,
                rs.REPLACING: self.step_replacing,
                rs.ROLLING_BACK: self.step_rolling_back,
            }[rollout.state](rollout)
        rollout.refresh_from_db()
        return rollout

    # --- the states ------------------------------------------------------------------------

    def step_pending(self, r: Rollout) -> None:
        olds = list(source_members(r.source, primary()))
        if not olds:
            # pending -> failed: nothing serves the old model any more
            self.change(r, rs.FAILED, f"no local member serves {r.source.name}")
        elif r.canary_percent:
            # pending -> canary: its member started beside the others
            self.begin(r, olds[0], r.target, keep_old=True)
            self.change(r, rs.CANARY, f"canary {r.new_member} starting on {r.target.name}")
        else:
            # pending -> replacing: the first member is replaced
            self.change(r, rs.REPLACING, "replacing one member at a time")

    def step_canary(self, r: Rollout) -> None:
        canary = Member.objects.filter(name=r.new_member).first()
        if r.abort_requested:
            self.change(r, rs.ROLLING_BACK, "the operator aborted")
        elif canary is None or canary.state == states.FAILED:
            why = canary.last_error.splitlines()[-1] if canary and canary.last_error.strip() else "it is gone"
            self.change(r, rs.ROLLING_BACK, f"the canary could not start: {why}", alert=True)
        elif r.gate_verdict == ROLL_BACK:
            self.change(r, rs.ROLLING_BACK, r.reason or "rolled back", alert=True)
        elif r.gate_verdict == PROMOTE:
            # canary -> replacing: the canary replaces the first old member once promoted
            first = source_members(r.source, primary()).exclude(name__in=r.created_members).first()
            old = first.name if first is not None and r.surge else r.old_member
            self.change(r, rs.REPLACING, r.reason or "promoted", old_member=old)
        elif canary.state == states.READY and r.gate and r.gate_pid is None:
            pid = self.launch_gate(r)
            Rollout.objects.filter(pk=r.pk).update(gate_pid=pid, reason=f"gate running (pid {pid})")
        elif r.gate and r.gate_pid and not jobs.alive(r.gate_pid):
            self.change(r, rs.ROLLING_BACK, "the gate ended without a verdict", alert=True)

    def step_replacing(self, r: Rollout) -> None:
        if r.abort_requested:
            self.change(r, rs.ROLLING_BACK, "the operator aborted")
            return
        if r.new_member:
            failed = self.follow(r, r.target)
            if failed:
                self.change(r, rs.ROLLING_BACK, failed, alert=True)
            return
        olds = list(source_members(r.source, primary()).exclude(name__in=r.created_members))
        if olds:
            self.begin(r, olds[0], r.target)
            return
        # replacing -> done: every member serves the new model; the alias follows it
        pool_settings = PoolSettings.load()
        if pool_settings.primary_model_id == r.source_id:
            pool_settings.primary_model = r.target
            audit.save_row(pool_settings, fields=["primary_model"])
        self.change(r, rs.DONE, f"every member serves {r.target.name}; it is the primary model now")

    def step_rolling_back(self, r: Rollout) -> None:
        under_way = Member.objects.filter(name=r.new_member).first() if r.new_member else None
        if r.new_member and (under_way is None or under_way.model_id == r.target_id):
            # A replacement toward the new model was under way: it goes with the others.
            Rollout.objects.filter(pk=r.pk).update(new_member="", old_member="")
            r.new_member = r.old_member = ""
        if r.new_member:
            failed = self.follow(r, r.source)
            if failed:
                self.change(r, rs.FAILED, failed)
            return
        leftovers = list(
            Member.objects.filter(name__in=r.created_members, model=r.target, remove_requested=False)
        )
        if not leftovers:
            # rolling back -> rolled back or aborted: the members serve the old model again
            end = rs.ABORTED if r.abort_requested else rs.ROLLED_BACK
            self.change(r, end, f"{r.reason}; the members serve {r.source.name} again")
            return
        member = leftovers[0]
        if source_members(r.source, primary()).count() >= r.members_total:
            retire(member)
            forget(r, member.name)
        else:
            self.begin(r, member, r.source)

    # --- one replacement -------------------------------------------------------------------

    def begin(self, r: Rollout, old: Member, to: Model, *, keep_old: bool = False) -> None:
        """Start replacing `old` by a member of `to`: beside it where memory allows, else
        `old` itself drained and restarted on `to`."""
        fields: dict = {"step_at": timezone.now(), "old_member": "" if keep_old else old.name}
        new = None
        if self.room(to, old):
            try:
                new = clone(old, to)
            except ActionError as exc:  # the pool's member limit: drain first instead
                log.info("no surge for %s: %s", old.name, exc)
        if new is None:
            restart_on(old, to)
            fields.update(new_member=old.name, old_member=old.name, surge=False)
        else:
            fields.update(new_member=new.name, surge=True)
        name = fields["new_member"]
        created = [n for n in r.created_members if n != old.name or to.pk != r.source_id]
        if to.pk == r.target_id and name not in created:
            created.append(name)
        fields["created_members"] = created
        how = "beside it" if fields["surge"] else "in its place, drained first"
        fields["reason"] = f"{old.name}: its replacement {name} starting on {to.name} {how}"
        Rollout.objects.filter(pk=r.pk).update(**fields)
        for key, value in fields.items():
            setattr(r, key, value)
        events.record(PoolEvent.ACTION, f"rollout {r.pk}: {fields['reason']}", member_name=name)

    def follow(self, r: Rollout, to: Model) -> str:
        """The replacement under way: when it is ready, the old member is drained and the step
        ends. Returns why it failed ('' while it goes well)."""
        new = Member.objects.filter(name=r.new_member).first()
        if new is None or new.state == states.FAILED or (new.model_id != to.pk):
            why = new.last_error.splitlines()[-1] if new and new.last_error.strip() else "it is gone"
            return f"{r.new_member} could not start on {to.name}: {why}"
        fresh = new.ready_at is not None and r.step_at is not None and new.ready_at >= r.step_at
        if new.state != states.READY or new.restart_requested or not fresh:
            return ""
        old = Member.objects.filter(name=r.old_member).first() if r.old_member != r.new_member else None
        if old is not None and old.wants_running:
            retire(old)  # only now: its replacement is ready
        if to.pk == r.source_id:
            forget(r, r.new_member)
        Rollout.objects.filter(pk=r.pk).update(
            new_member="", old_member="", replaced=r.replaced + 1, reason=f"{r.new_member} ready on {to.name}"
        )
        return ""

    def change(self, r: Rollout, new: str, reason: str, *, alert: bool = False, **fields) -> None:
        """The one place a rollout's state changes: checked against the machine's edges,
        written conditionally (the row's state as read), audited as the rollout."""
        if not rs.can_change(r.state, new):
            raise ValueError(f"rollout {r.pk}: no move from {r.state} to {new}")
        if new in rs.FINISHED_STATES:
            fields["finished_at"] = timezone.now()
        stored = Rollout.objects.filter(pk=r.pk, state=r.state)
        if not stored.exists():
            return
        audit.update_row(r, state=new, note=reason)
        Rollout.objects.filter(pk=r.pk).update(reason=reason, **fields)
        events.record(
            PoolEvent.ACTION, f"rollout {r.pk} ({r.source.name} -> {r.target.name}): {new}: {reason}"
        )
        if alert and new == rs.ROLLING_BACK:
            notify_rollback(r, reason)


# --- helpers -------------------------------------------------------------------------------------


def primary() -> Model | None:
    return PoolSettings.load().primary_model


def clone(like: Member, model: Model) -> Member:
    """A new local member shaped like `like` (engine, slots, threads, context, GPU), on `model`."""
    member = member_add(
        weight=like.weight, gpu=like.gpu, node=like.node, engine=like.engine, slots=like.slots, model=model
    )
    shape = {"n_threads": like.n_threads, "n_ctx": like.n_ctx, "n_gpu_layers": like.n_gpu_layers}
    if any(getattr(member, k) != v for k, v in shape.items()):
        audit.update_row(member, **shape)
    return member


def restart_on(member: Member, model: Model) -> None:
    """Drain first: the member finishes what it has in flight, then starts again on `model`."""
    audit.update_row(
        member,
        model=model,
        should_run=True,
        restart_requested=True,
        restarts=0,
        drain_timeout_s=settings.VIBEADMIN_DRAIN_TIMEOUT_S,
    )


def retire(member: Member) -> None:
    """Drained with the full drain timeout (its answers in flight finish), then removed."""
    audit.update_row(
        member, should_run=False, remove_requested=True, drain_timeout_s=settings.VIBEADMIN_DRAIN_TIMEOUT_S
    )


def forget(r: Rollout, name: str) -> None:
    r.created_members = [n for n in r.created_members if n != name]
    Rollout.objects.filter(pk=r.pk).update(created_members=r.created_members)


# --- the gate's process and the webhook ----------------------------------------------------------


def launch_gate_process(r: Rollout) -> int:
    """`manage.py pool rollout --gate-run ID`, a process of its own (services/jobs.py): it asks
    through the gateway like a batch client and writes its figures and verdict to the row."""
    return jobs.spawn(["rollout", "--gate-run", str(r.pk)], f"rollout-gate-{r.pk}")


def notify_rollback(r: Rollout, reason: str) -> None:
    """An alert to the operator's webhook (the Alerts page's), off the tick."""
    url = PoolSettings.load().alert_webhook_url
    if not url:
        return
    alert = webhook.Alert(
        name="RolloutRolledBack",
        status=webhook.FIRING,
        severity="warning",
        summary=f"rollout {r.pk} of {r.target.name} rolled back: {reason}",
        starts_at=timezone.now(),
        labels={"model": r.target.name},
    )
    threading.Thread(target=webhook.send, args=(url, alert), name="rollback-webhook", daemon=True).start()
