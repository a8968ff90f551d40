"""BENCHMARKS.md is built from results on disk, some older than the code that reads them:
the report shows what a result has and never stops on what it lacks. And the state
drills' goals are met only where every round met them. No benchmark runs here."""

import json

from bench import fairness, state_drills
from bench.loadgen import Result
from tests.helpers import ROOT


def test_the_fairness_table_shows_a_dash_for_a_figure_an_older_result_lacks():
    result = json.loads((ROOT / "bench" / "results" / "fairness.json").read_text())
    for key in ("quiet_median_alone_s", "quiet_median_named_s", "quiet_named_vs_alone"):
        result["figures"].pop(key, None)

    table = fairness.markdown(result)

    assert "| one key, a quiet student's median latency alone" in table
    assert "| – / " in table


def drill_row(fault: str, round_: int, **changes) -> dict:
    row = {
        "fault": fault,
        "round": round_,
        "requests": 100,
        "failed": 0,
        "errors": [],
        "lost": 0,
        "lost_in_flight_on_the_dead": 0,
        "quota_tokens": 500,
        "quota_used_tokens": 500,
        "quota_overspend_tokens": 0,
        "quota_reservation_tokens": 40,
        "quota_refused": 10,
        "recover_s": 0.0,
        "most_inside_a_member": 1,
        "members_over_capacity": 0,
    }
    return row | changes


def drills(*rows: dict) -> dict:
    return {
        "name": "state_drills",
        "members": 3,
        "member_kind": "fake",
        "tokens": 16,
        "rate": 5.0,
        "duration_s": 12.0,
        "fault_at_s": 4.0,
        "rounds": 2,
        "drills": list(rows),
    }


def met(result: dict) -> dict[str, bool]:
    return {g["goal"]: g["met"] for g in state_drills.goals(result)}


def test_a_drill_goal_is_met_only_where_every_round_met_it():
    result = drills(
        drill_row("gateway", 1, lost=3, lost_in_flight_on_the_dead=3),
        drill_row("gateway", 2, lost=4, lost_in_flight_on_the_dead=3),
        drill_row("redis", 1, quota_overspend_tokens=80),
        drill_row("redis", 2, quota_overspend_tokens=81),
        drill_row("postgres", 1),
        drill_row("postgres", 2, most_inside_a_member=2, members_over_capacity=1),
    )

    goals = met(result)

    assert goals["gateway: nothing lost that was not in flight on a process that died"] is False
    assert goals["gateway: members over capacity = 0"] is True
    # Two gateways may each let one request of 40 tokens past the quota: 80, not 81.
    assert goals["redis: quota overspent by at most one request per gateway (2 gateways)"] is False
    assert goals["postgres: members over capacity = 0"] is False
    assert goals["postgres: quota overspent by at most one request per gateway (2 gateways)"] is True


def test_the_drills_table_gives_the_median_of_the_rounds_and_their_range():
    result = drills(
        drill_row("supervisor", 1, recover_s=1.5, failed=2, errors=["HTTP 503 no_capacity"]),
        drill_row("supervisor", 2, recover_s=None, failed=4),
    )

    table = state_drills.markdown(result)

    row = next(line for line in table.splitlines() if line.startswith("| supervisor |"))
    assert "| 3 (2–4) |" in row  # failed: the median of 2 and 4, and the range
    assert "– in 1 of 2; 1.5" in row  # one round never recovered within the drill
    assert "HTTP 503 no_capacity" in row


def test_a_reply_cut_after_its_status_is_lost_and_an_error_event_is_an_answer():
    def result(status: int, error: str) -> Result:
        return Result(tag="load:0", at=1.0, end=2.0, latency_s=1.0, status=status, error=error)

    cut = "ClientPayloadError: Response payload is not completed"
    assert state_drills.is_lost(result(200, cut))
    assert state_drills.is_lost(result(200, "stream ended without [DONE]"))
    assert state_drills.is_lost(result(0, "ServerDisconnectedError: Server disconnected"))
    assert not state_drills.is_lost(result(200, "stream ended with an error event"))
    assert not state_drills.is_lost(result(503, "HTTP 503"))
    assert not state_drills.is_lost(result(200, ""))
