"""The benchmark harness still runs: `python -m bench.run --smoke` into a temporary folder
writes each benchmark's JSON with the fields BENCHMARKS.md is built from. It checks the
shape of the results only, never how fast anything was."""

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.timeout(280)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=270,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def load(out, name: str) -> dict:
    result = json.loads((out / f"{name}.json").read_text())
    assert "error" not in result, result.get("error")
    assert result["goals"], f"{name} reported no goals"
    for goal in result["goals"]:
        assert {"benchmark", "goal", "value", "met"} <= goal.keys()
    for plot in result["plots"]:
        assert (out / plot).stat().st_size > 0
    return result


def test_the_overhead_benchmark_compares_straight_nginx_and_vibeadmin(smoke):
    result = load(smoke, "overhead")

    row = result["summary"][0]
    assert {"direct", "vibeadmin", "vibeadmin_daphne"} <= row["legs"].keys()
    assert {"rps", "p50_ms", "p99_ms"} <= row["legs"]["vibeadmin"].keys()
    # The gateway's own timing header was read from its responses, on both of its doors.
    assert row["legs"]["vibeadmin"]["overhead_header_ms"] is not None
    assert row["legs"]["vibeadmin_daphne"]["overhead_header_ms"] is not None
    # The open-loop latency leg: every stream of every leg came back whole.
    latency = result["latency"]["summary"]
    assert {"direct", "vibeadmin", "vibeadmin_daphne"} <= latency.keys()
    for leg in latency.values():
        assert leg["ok"] == leg["requests"] > 0
    assert "added_ttft_p50" in latency["vibeadmin"] and "added_latency_p99" in latency["vibeadmin"]
    # Every figure comes from several interleaved rounds: a median and the range around it.
    added = latency["vibeadmin"]["added_ttft_p50"]
    assert added["rounds"] == result["rounds"] >= 2
    assert added["low"] <= added["median"] <= added["high"]
    # The CPU time the gateway's process spent per request, from its own counters.
    cpu = result["cpu"][0]
    gateway = cpu["legs"]["vibeadmin"]
    assert gateway["ok"] == gateway["requests"] == result["cpu_requests"] * result["rounds"]
    assert 0 < gateway["us_per_request"]["low"] <= gateway["us_per_request"]["median"]
    assert cpu["legs"]["vibeadmin_daphne"]["us_per_request"]["median"] > 0
    if "nginx" in row["legs"]:  # against nginx's worker's, round by round
        assert cpu["legs"]["nginx"]["us_per_request"]["median"] > 0
        assert row["vibeadmin_rps_vs_nginx"]["median"] > 0 and cpu["vibeadmin_vs_nginx"]["median"] > 0
    else:  # nginx missing: the run says so instead of failing
        notes = json.loads((smoke / "run.json").read_text())["notes"]
        assert any("nginx" in note for note in notes)


def test_the_strategies_benchmark_reports_latency_and_waits_per_strategy(smoke):
    result = load(smoke, "strategies")

    assert {r["strategy"] for r in result["runs"]} >= {"round_robin", "least_connections"}
    for run in result["runs"]:
        assert run["failed"] == 0
        assert {"p50", "p95", "p99"} <= run["latency_s"].keys()
        assert {"p50", "p95", "p99"} <= run["wait_s"].keys()
        assert run["gateway_queue_ms"]["p50"] is not None
    assert result["ratios"][0]["p99_vs_round_robin"] > 0


def test_the_scaling_benchmark_reports_efficiency(smoke):
    result = load(smoke, "scaling")

    assert result["one_member_rps"] > 0
    assert all(r["efficiency"] > 0 and r["failed"] == 0 for r in result["runs"])


def test_the_run_writes_a_report_with_the_machine_and_the_goals(smoke):
    report = (smoke / "BENCHMARKS.md").read_text()

    assert "## Machine" in report and "## Goals" in report and "How to rerun" in report
    assert "![overhead_plain.png]" in report and "![overhead_latency.png]" in report
    assert "CPU time per proxied request" in report and "![overhead_cpu.png]" in report
    meta = json.loads((smoke / "run.json").read_text())
    assert meta["failed"] == [] and meta["machine"]["cores"] >= 1
