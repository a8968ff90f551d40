"""The shipped Grafana dashboard reads only series that /metrics really exposes."""

import json
import re
from pathlib import Path

import pytest

from pool import metrics
from pool.dashboard import snapshot
from pool.loops import alerts, autoscale, resources, runtime
from pool.models import AlertRule, Member

pytestmark = pytest.mark.django_db

DASHBOARD = Path(__file__).resolve().parent.parent / "grafana" / "vibeadmin.json"


def series_read_by_the_dashboard() -> set[str]:
    data = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in data["panels"] for t in panel.get("targets", [])]
    exprs += [v["query"] for v in data["templating"]["list"] if v["type"] == "query"]
    return {name for expr in exprs for name in re.findall(r"\bvibeadmin_[a-z_]+", expr)}


def test_every_series_on_the_dashboard_is_exposed(client, settings):
    Member.objects.create(name="m1", state="ready")
    AlertRule.objects.create(name="Queue long", metric="queue_depth", threshold=5, duration_s=0)
    metrics.record_request(member="m1", status=200, latency_s=0.5, ttft_s=0.1, completion_tokens=8)
    metrics.record_load(queue_depth=0, inflight_by_member={"m1": 0}, slots_by_member={"m1": 8})
    metrics.record_engine(
        "m1", {"tokens_predicted_total": 0.0, "prompt_tokens_total": 0.0}
    )  # a llama-server's probe
    metrics.RETRIES.labels("m1").inc(0)
    alerts.evaluate(values={"queue_depth": 9.0})
    autoscale.step()
    autoscale.DECISIONS.labels("up").inc(0)
    snapshot.build()
    runtime.sample_pool()
    resources.MEMBER_CPU.labels("m1").set(0)  # no local process in this test
    resources.MEMBER_MEMORY.labels("m1").set(0)
    resources.GPU_UTIL.labels("0").set(0)  # no GPU here either
    resources.GPU_MEMORY.labels("0").set(0)

    # As Prometheus scrapes it, with the token its `authorization` config sends (grafana/README.md).
    settings.VIBEADMIN_METRICS_TOKEN = "prometheus-scrape-token-123"
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer prometheus-scrape-token-123")
    assert response.status_code == 200
    exposed = response.content.decode()
    names = {
        line.split("{")[0].split(" ")[0] for line in exposed.splitlines() if line.startswith("vibeadmin_")
    }
    missing = {s for s in series_read_by_the_dashboard() if s not in names}
    assert not missing, f"the dashboard reads series /metrics does not have: {sorted(missing)}"
    assert len(series_read_by_the_dashboard()) >= 20
