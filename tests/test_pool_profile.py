"""`manage.py pool profile`: which layouts it plans on a host, how long its points are so
that the whole profile fits its budget, when a layout stops early, which layout it calls
best for each target, and the capacity it works out from the measured figures. Pure
planning over plain figures: the real measuring is in test_pool_profile_real.py."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from pool.profiling import capacity
from pool.profiling import plan as planning
from pool.profiling.measuring import stop_on_signals
from pool.profiling.plan import ANSWERS, LEVELS, TTFT, Layout, Point


def points_for(layout: Layout, speeds: list[float], ttfts: list[float | None] | None = None) -> list[Point]:
    ttfts = ttfts or [0.5] * len(speeds)
    return [
        Point(layout.key, level, speed, ttft)
        for level, speed, ttft in zip(LEVELS, speeds, ttfts, strict=False)
    ]


def test_two_cores_get_a_handful_of_layouts_that_each_use_both_cores():
    layouts = planning.candidates(2)
    assert 3 <= len(layouts) <= 6
    assert all(layout.members * layout.threads == 2 for layout in layouts)
    assert Layout(2, 1, 8) in layouts and Layout(1, 2, 8) in layouts


def test_the_pools_own_layout_is_measured_first_and_only_once():
    current = Layout(2, 1, 8)
    layouts = planning.candidates(2, current=current)
    assert layouts[0] == current and layouts.count(current) == 1


def test_a_gpu_host_gets_layouts_of_slots_with_every_layer_on_the_gpu():
    layouts = planning.candidates(16, gpu=True)
    assert {layout.slots for layout in layouts} == {8, 16, 32}
    assert all(layout.gpu_layers == -1 and layout.members == 1 for layout in layouts)


def test_the_default_budget_fits_every_layout_in_full_on_two_cores():
    layouts = planning.candidates(2)
    plan = planning.make_plan(layouts, 300)
    assert plan.layouts == layouts
    assert plan.planned_s <= 300 - planning.RESERVE_S + 1e-6
    assert plan.point_s >= planning.MIN_POINT_S


def test_a_short_budget_drops_the_last_candidates_rather_than_make_points_too_short():
    layouts = planning.candidates(2, current=Layout(2, 1, 8))
    plan = planning.make_plan(layouts, 90)
    assert 1 <= len(plan.layouts) < len(layouts)
    assert plan.layouts[0] == Layout(2, 1, 8)
    assert plan.point_s >= planning.MIN_POINT_S and plan.planned_s <= 90


def test_a_budget_too_short_for_one_layout_is_refused_with_the_least_it_needs():
    with pytest.raises(planning.PlanError, match="too short: give at least"):
        planning.make_plan(planning.candidates(2), 20)


def test_a_long_budget_does_not_make_points_longer_than_needed():
    plan = planning.make_plan([Layout(1, 2, 8)], 3600)
    assert plan.point_s == planning.MAX_POINT_S


def test_a_layout_clearly_behind_the_best_at_four_stops_early_and_a_close_one_does_not():
    assert planning.should_prune(15.0, best_at=21.0)
    assert not planning.should_prune(18.0, best_at=21.0)
    assert not planning.should_prune(5.0, best_at=None)  # the first layout has nothing to lose to


def test_the_best_for_answers_is_the_layout_with_the_most_tokens_per_second_measured_in_full():
    a, b, c = Layout(2, 1, 8), Layout(1, 2, 8), Layout(1, 2, 16)
    points = (
        points_for(a, [10, 15, 20, 21, 21])
        + points_for(b, [12, 18, 22, 23, 22])
        + points_for(c, [12, 30, 30])  # pruned or cut short: not a full sweep
    )
    assert planning.best_layout(points, [a, b, c], target=ANSWERS) == b


def test_a_partial_profile_still_names_the_best_of_what_it_measured():
    a, b = Layout(2, 1, 8), Layout(1, 2, 8)
    points = points_for(a, [10, 15]) + points_for(b, [12])
    assert planning.best_layout(points, [a, b], target=ANSWERS) == a


def test_the_best_for_ttft_is_the_lowest_at_the_level_that_holds_the_load():
    a, b = Layout(2, 1, 8), Layout(1, 2, 4)
    points = points_for(a, [10, 15, 20, 21, 21], [0.2, 0.3, 0.4, 0.6, 3.0]) + points_for(
        b, [12, 18, 22, 23, 22], [0.1, 0.2, 0.3, 2.5, 6.0]
    )
    assert planning.best_layout(points, [a, b], target=TTFT, load=2) == b
    assert planning.best_layout(points, [a, b], target=TTFT, load=6) == a  # measured at 8


def test_a_censored_ttft_never_wins():
    a, b = Layout(2, 1, 8), Layout(1, 2, 4)
    points = [Point(a.key, 16, 20, 9.0), Point(b.key, 16, 20, 1.0, ttft_censored=True)]
    assert planning.best_layout(points, [a, b], target=TTFT, load=16) == a


def test_an_unknown_target_is_refused():
    with pytest.raises(ValueError, match="unknown target"):
        planning.best_layout([], [], target="fastest")


def test_answers_per_minute_come_from_the_pace_and_the_answers_length():
    assert planning.answers_per_minute(20.0, 300) == pytest.approx(4.0)


def test_fifty_answers_at_once_need_as_many_hosts_as_the_measured_pace_says():
    layout = Layout(2, 1, 8)
    points = points_for(layout, [10, 15, 20, 20, 20])  # tokens/s at 1, 2, 4, 8, 16 at once
    sized = capacity.size(points, [layout], gpu=False, peak=50, answer_tokens=300, within_s=120, spares=1)
    # One host at 20 tokens/s finishes 8 answers of 300 tokens in 120 s: 50 need ceil(50 / 8) = 7.
    assert sized is not None and sized.reachable
    assert sized.hosts == 7 and sized.per_host == 8 and sized.seconds <= 120
    assert sized.members == (7 + 1) * 2
    assert sized.per_minute == pytest.approx(4.0)


def test_a_deadline_no_host_can_meet_says_so():
    layout = Layout(1, 2, 8)
    sized = capacity.size(
        points_for(layout, [1, 1, 1, 1, 1]), [layout], gpu=True, peak=4, answer_tokens=300, within_s=10
    )
    assert sized is not None and not sized.reachable and sized.unit == "GPU"


def test_no_profile_means_no_sizing():
    assert capacity.size([], [], gpu=False, peak=50, answer_tokens=300, within_s=60) is None


def test_a_layout_that_made_no_token_in_a_window_stops_there():
    assert planning.stalled(0.0)
    assert not planning.stalled(0.4)


def test_a_signal_asks_the_measuring_to_stop_and_a_second_interrupts_at_once():
    """Ctrl-C or SIGTERM while measuring is taken at the measuring's next check, not raised
    wherever it lands (inside asyncio building a loop, it left a traceback behind)."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with stop_on_signals(stop) as interrupted:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs between two of this thread's bytecodes
        assert stop.is_set() and interrupted.is_set()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
