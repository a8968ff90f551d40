"""The dashboard's rolling windows: percentiles read from bucketed distributions stay
within the buckets' 4% of the exact ones, and per-member figures add up."""

import math
import random

import pytest

from pool import metrics
from pool.metrics import Dist


def exact(values: list[float], q: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@pytest.mark.parametrize("seed", range(5))
def test_a_bucketed_percentile_is_within_four_percent_of_the_exact_one(seed):
    rng = random.Random(seed)
    values = [rng.lognormvariate(-1, 1.2) for _ in range(5000)]
    dist = Dist()
    for v in values:
        dist.add(v)
    for q in (0.5, 0.95, 0.99):
        assert dist.percentile(q) == pytest.approx(exact(values, q), rel=0.04)
    assert dist.mean() == pytest.approx(sum(values) / len(values))


def test_a_single_value_comes_back_exactly():
    dist = Dist()
    dist.add(0.2345)
    assert dist.percentile(0.5) == 0.2345
    assert dist.percentile(0.99) == 0.2345


def test_merged_distributions_equal_one_built_from_all_values():
    rng = random.Random(7)
    parts = [[rng.uniform(0.01, 3) for _ in range(300)] for _ in range(4)]
    merged = Dist.of(_dist(p) for p in parts)
    whole = _dist([v for p in parts for v in p])
    assert merged.buckets == whole.buckets
    assert (merged.count, merged.low, merged.high) == (whole.count, whole.low, whole.high)


def test_summary_adds_up_per_member_over_its_span(monkeypatch):
    monkeypatch.setattr(metrics, "window", metrics.Window())
    now = 1_000_000.0
    for i in range(30):
        monkeypatch.setattr(metrics.time, "time", lambda i=i: now - 29 + i)
        metrics.record_request(member="a", status=200, latency_s=0.1, completion_tokens=10)
        metrics.record_request(member="b", status=500 if i % 3 == 0 else 200, latency_s=0.3)
    summary = metrics.summary(60, now)
    assert summary["requests"] == 60
    assert summary["error_rate"] == pytest.approx(10 / 60)
    assert summary["members"]["a"]["p50_s"] == pytest.approx(0.1)
    assert summary["members"]["b"]["errors"] == 10
    assert summary["members"]["a"]["tokens_per_s"] == pytest.approx(300 / 60)
    assert summary["p95_s"] == pytest.approx(0.3)
    assert [p["rps"] for p in metrics.history(60, now)] == [2] * 30


def _dist(values):
    dist = Dist()
    for v in values:
        dist.add(v)
    return dist
