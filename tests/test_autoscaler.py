"""The autoscaler: off by default; within min and max it follows the load, one decision
per cooldown, each a SCALING event made through pool_scale."""

from datetime import timedelta

import pytest
from django.utils import timezone

from pool.loops import autoscale
from pool.loops.autoscale import Load
from pool.models import Member, PoolEvent, PoolSettings
from pool.services.members import pool_scale

pytestmark = pytest.mark.django_db

BUSY = Load(inflight=2, queue=4)
IDLE = Load(inflight=0, queue=0)


@pytest.fixture
def autoscaling():
    """On, between 1 and 4 members, one request in flight per member, a 60 s cooldown."""
    PoolSettings.objects.update_or_create(
        pk=1,
        defaults={
            "autoscale_enabled": True,
            "autoscale_min": 1,
            "autoscale_max": 4,
            "autoscale_metric": autoscale.INFLIGHT_PER_MEMBER,
            "autoscale_target": 1.0,
            "autoscale_cooldown_s": 60,
        },
    )
    pool_scale(count=2)
    return PoolSettings.load()


def wanted() -> int:
    return autoscale.running_count()


def decisions() -> list[str]:
    return list(PoolEvent.objects.filter(kind=PoolEvent.SCALING).values_list("message", flat=True))


def test_it_does_nothing_while_off():
    pool_scale(count=2)
    assert autoscale.step(load=BUSY) is None
    assert wanted() == 2 and decisions() == []


def test_it_scales_up_to_the_maximum_through_pool_scale(autoscaling):
    decision = autoscale.step(load=BUSY)  # 6 requests for 2 members; the most is 4
    assert (decision.current, decision.desired) == (2, 4)
    assert wanted() == 4 and Member.objects.count() == 4
    [message] = decisions()
    assert message.startswith(
        "scale to 4 (autoscaler: 3.00 in flight per member against target 1; kept within 1..4)"
    )


def test_it_waits_out_the_cooldown_between_decisions(autoscaling):
    now = timezone.now()
    autoscale.step(now=now, load=BUSY)
    assert autoscale.step(now=now + timedelta(seconds=30), load=IDLE) is None
    assert wanted() == 4

    decision = autoscale.step(now=now + timedelta(seconds=61), load=IDLE)
    assert (decision.current, decision.desired) == (4, 1)  # never below the fewest
    assert wanted() == 1 and len(decisions()) == 2


def test_load_near_the_target_leaves_the_pool_alone(autoscaling):
    assert autoscale.step(load=Load(inflight=2, queue=0.1)) is None
    assert wanted() == 2 and decisions() == []


def test_on_queue_depth_it_adds_one_member_at_a_time(autoscaling):
    PoolSettings.objects.filter(pk=1).update(autoscale_metric=autoscale.QUEUE_DEPTH, autoscale_target=2)
    now = timezone.now()
    assert autoscale.step(now=now, load=Load(inflight=2, queue=5)).desired == 3
    assert autoscale.step(now=now + timedelta(seconds=61), load=Load(inflight=1, queue=0)).desired == 2


def test_it_brings_the_pool_up_to_the_minimum_even_when_idle():
    PoolSettings.objects.update_or_create(pk=1, defaults={"autoscale_enabled": True, "autoscale_min": 2})
    assert autoscale.step(load=IDLE).desired == 2
    assert wanted() == 2


def test_metrics_show_what_the_autoscaler_wants(admin_client, autoscaling):
    autoscale.step(load=BUSY)
    text = admin_client.get("/metrics").content.decode()
    assert "vibeadmin_autoscale_desired_members 4.0" in text
    assert "vibeadmin_autoscale_enabled 1.0" in text
    assert 'vibeadmin_autoscale_decisions_total{direction="up"}' in text


def test_the_capacity_hint_adds_spares_to_what_the_target_needs(monkeypatch):
    from pool import metrics

    monkeypatch.setattr(metrics, "window", metrics.Window())
    metrics.record_request(member="m1", status=200, latency_s=4.0)
    hint = autoscale.capacity_hint(target_qps=1.1, spares=3)
    assert hint.per_member_qps == 0.25 and hint.needed == 5 + 3
