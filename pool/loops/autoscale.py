"""Elastic scaling, and the capacity hint the overview shows.

`step()` is one look at the load: the runtime calls it every few seconds, tests call it
with `now=` and `load=`. Like every button, it only changes desired state, through
`pool.pool_scale`, whose event (kind SCALING) is the decision operators read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone
from prometheus_client import Counter, Gauge

from pool import inflight, metrics
from pool.models import Member, PoolEvent, PoolSettings, states
from pool.models.pool_settings import AUTOSCALE_TARGETS
from pool.services import audit
from pool.services.members import pool_scale

INFLIGHT_PER_MEMBER = "inflight_per_member"
QUEUE_DEPTH = "queue_depth"
TARGETS = AUTOSCALE_TARGETS
LOAD_SPAN_S = 30  # load is averaged over this long, so one burst does not scale the pool
TOLERANCE = 0.1  # as Kubernetes' HPA: within 10% of the target, leave the pool alone
# With gateways sharing Redis, one serve process at a time may scale: the first to decide
# takes the role, renewed each time it scales again; another may take it this long after.
LEADER_TTL_S = 30.0

ENABLED = Gauge("vibeadmin_autoscale_enabled", "1 when autoscaling is on")
DESIRED = Gauge("vibeadmin_autoscale_desired_members", "Local members the autoscaler wants running")
CURRENT = Gauge("vibeadmin_autoscale_current_members", "Local members that want to run now")
LOAD = Gauge("vibeadmin_autoscale_load", "The load the autoscaler last measured, in its target's unit")
DECISIONS = Counter("vibeadmin_autoscale_decisions_total", "Scaling decisions taken", ["direction"])


@dataclass(frozen=True)
class Load:
    inflight: float  # requests being generated, all members together
    queue: float  # requests waiting for a member


@dataclass(frozen=True)
class Decision:
    current: int
    desired: int
    reason: str


def running_count() -> int:
    """Local members that want to run: what pool_scale counts and changes."""
    return Member.objects.filter(kind=states.LOCAL, should_run=True, remove_requested=False).count()


def measure_load(now: float | None = None) -> Load:
    seconds = metrics.window.last(LOAD_SPAN_S, now)
    if not seconds:  # the gateway has not sampled yet: take the live counts
        return Load(float(sum(inflight.snapshot().values())), float(inflight.waiting()))
    return Load(
        sum(s.inflight for s in seconds) / len(seconds), sum(s.queue_depth for s in seconds) / len(seconds)
    )


def desired_count(cfg: PoolSettings, current: int, load: Load) -> tuple[int, float, str]:
    """How many members the load asks for, the measured value, and why."""
    if cfg.autoscale_metric == QUEUE_DEPTH:
        value = load.queue
        if value > cfg.autoscale_target:
            wanted, why = current + 1, f"queue {value:.1f} above target {cfg.autoscale_target:g}"
        elif value == 0 and load.inflight < current - 1:
            wanted, why = current - 1, f"queue empty and {load.inflight:.1f} in flight on {current} members"
        else:
            wanted, why = current, "queue within target"
    else:
        value = (load.inflight + load.queue) / max(current, 1)
        if current and abs(value / cfg.autoscale_target - 1) <= TOLERANCE:
            wanted = current
        else:
            wanted = math.ceil((load.inflight + load.queue) / cfg.autoscale_target - 1e-9)
        why = f"{value:.2f} in flight per member against target {cfg.autoscale_target:g}"
    bounded = min(max(wanted, cfg.autoscale_min), cfg.autoscale_max)
    if bounded != wanted:
        why += f"; kept within {cfg.autoscale_min}..{cfg.autoscale_max}"
    return bounded, value, why


def cooldown_left_s(cfg: PoolSettings, now: datetime) -> float:
    last = PoolEvent.objects.filter(kind=PoolEvent.SCALING).values_list("created_at", flat=True).first()
    if last is None:
        return 0.0
    return max(0.0, cfg.autoscale_cooldown_s - (now - last).total_seconds())


def step(*, now: datetime | None = None, load: Load | None = None) -> Decision | None:
    """Look at the load once and scale if it asks for it; returns the decision taken, if any."""
    now = now or timezone.now()
    cfg = PoolSettings.load()
    current = running_count()
    CURRENT.set(current)
    ENABLED.set(1 if cfg.autoscale_enabled else 0)
    if not cfg.autoscale_enabled:
        DESIRED.set(current)
        return None
    load = load or measure_load(now.timestamp())
    desired, value, why = desired_count(cfg, current, load)
    DESIRED.set(desired)
    LOAD.set(value)
    if desired == current or cooldown_left_s(cfg, now) > 0:
        return None
    if not inflight.lead("autoscaler", ttl_s=LEADER_TTL_S):
        return None  # another serve process scales; two would both add members
    with audit.acting_as(audit.AUTOSCALER):  # the trail names the autoscaler, not a person
        pool_scale(count=desired, reason=f"autoscaler: {why}")
    DECISIONS.labels("up" if desired > current else "down").inc()
    return Decision(current, desired, why)


# --- capacity planning --------------------------------------------------------------------


@dataclass(frozen=True)
class CapacityHint:
    target_qps: float
    spares: int
    per_member_qps: float | None  # what one member can answer, from measured latency
    mean_latency_s: float | None
    needed: int | None  # members for the target, spares included
    running: int

    @property
    def measured(self) -> bool:
        return self.per_member_qps is not None


def capacity_hint(*, target_qps: float, spares: int = 2, now: float | None = None) -> CapacityHint:
    """Members needed = ceil(target QPS / measured QPS per member) + spares. A member
    serves one request at a time, so it answers 1 / (mean latency) requests a second."""
    mean = metrics.summary(metrics.HISTORY_S, now)["mean_s"]
    per_member = 1 / mean if mean else None
    needed = math.ceil(target_qps / per_member - 1e-9) + spares if per_member else None
    return CapacityHint(target_qps, spares, per_member, mean, needed, running_count())
