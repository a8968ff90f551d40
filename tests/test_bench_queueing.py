"""The strategies benchmark's queueing model (bench/queueing.py) on cases small enough to
work out by hand: each request's latency, exactly."""

import pytest

from bench.queueing import model, simulate


def test_one_member_serves_in_arrival_order():
    latency = simulate("round_robin", [0, 1, 2], [2, 2, 2], [2.0, 2.0, 2.0], members=1, cap=64)

    assert latency.tolist() == [2.0, 3.0, 4.0]


@pytest.mark.parametrize("policy", ["round_robin", "least_connections", "power_of_two", "least_work"])
def test_with_a_cap_of_one_the_gateways_queue_gives_the_first_free_member(policy):
    # Two members busy with 1 s and 5 s: the third request waits for the first to be free.
    latency = simulate(policy, [0, 0, 0], [1, 5, 1], [1.0, 5.0, 1.0], members=2, cap=1)

    assert latency.tolist() == [1.0, 5.0, 2.0]


def test_round_robin_queues_behind_a_long_request_where_least_work_does_not():
    arrivals, tokens, service = [0, 0, 0, 0], [4, 1, 1, 1], [4.0, 1.0, 1.0, 1.0]

    blind = simulate("round_robin", arrivals, tokens, service, members=2, cap=64)
    aware = simulate("least_work", arrivals, tokens, service, members=2, cap=64)

    assert blind.tolist() == [4.0, 1.0, 5.0, 2.0]  # the third waits behind the 4 s one
    assert aware.tolist() == [4.0, 1.0, 2.0, 3.0]  # both short ones go to the other member


def test_the_model_reports_every_policy_at_every_cap_against_round_robin():
    result = model([8, 256], 0.01, 0.001, requests=400, seeds=1, caps=(64, 1))

    assert {(r["cap"], r["policy"]) for r in result["rows"]} == {
        (cap, p)
        for cap in (64, 1)
        for p in ("round_robin", "least_connections", "power_of_two", "least_work")
    }
    for row in result["rows"]:
        assert row["p99_s"] >= row["p50_s"] >= 0.01 + 0.001 * 8
        if row["policy"] == "round_robin":
            assert row["p99_vs_round_robin"] == 1.0
