"""The overview's profile panel and `pool profile --show/--apply` over a stored profile:
the table and the plot's figures, Stop, Apply through pool/py (members reshaped and
scaled), and the capacity worked out from the measured pace. The measuring itself runs
against real llama-server processes in test_pool_profile_real.py."""

from __future__ import annotations

import io
import os

import pytest
from django.core.management import call_command
from django.urls import reverse

from pool.models import Member, ProfileRun, states
from pool.profiling import plan as planning
from pool.profiling.plan import LEVELS, Layout
from pool.services import jobs
from pool.services.members import member_add

HTMX = {"HTTP_HX_REQUEST": "true"}
SLOW, FAST = Layout(2, 1, 8), Layout(1, 2, 16)


def stored_profile(**fields) -> ProfileRun:
    """A finished profile in which 1 x 2 threads x 16 slots made the most tokens/s."""
    layouts = [SLOW, FAST]
    plan = planning.make_plan(layouts, 300)
    points = [
        {"layout": SLOW.key, "level": n, "tokens_per_s": s, "ttft_p50_s": t, "ttft_censored": False}
        for n, s, t in zip(LEVELS, [10, 15, 19, 20, 20], [0.2, 0.3, 0.5, 0.9, 4.0], strict=True)
    ] + [
        {"layout": FAST.key, "level": n, "tokens_per_s": s, "ttft_p50_s": t, "ttft_censored": False}
        for n, s, t in zip(LEVELS, [11, 16, 21, 22, 23], [0.3, 0.4, 0.6, 1.1, 2.0], strict=True)
    ]
    values = {
        "state": ProfileRun.DONE,
        "cores": 2,
        "plan": plan.as_dict(),
        "layouts": {SLOW.key: "done", FAST.key: "done"},
        "points": points,
        "model_path": "/models/q.gguf",
        **fields,
    }
    return ProfileRun.objects.create(**values)


@pytest.fixture
def llama_server_pool(settings, db):
    settings.VIBEADMIN_ENGINE = states.LLAMA_SERVER
    settings.VIBEADMIN_N_GPU_LAYERS = 0
    for _ in range(2):
        member_add()
    return settings


def test_the_overview_offers_a_profile_when_none_was_measured(admin_client):
    page = admin_client.get(reverse("dashboard")).content.decode()
    assert "Profile this host" in page and "No profile yet" in page
    assert "press “Profile this host” above" in page


def test_the_start_button_creates_a_profile_and_hands_it_to_a_process_of_its_own(
    admin_client, llama_server_pool, monkeypatch
):
    """jobs.launch (which starts `manage.py pool profile --run ID`) is replaced by a
    recorder: the real child process is what test_pool_profile_real.py runs."""
    launched = []
    monkeypatch.setattr(jobs, "launch", lambda run, command: launched.append(run))
    response = admin_client.post(reverse("profile_start"), {"budget_s": 300}, **HTMX)
    run = ProfileRun.objects.get()
    assert launched == [run] and run.state == ProfileRun.RUNNING
    assert Layout.from_dict(run.plan["layouts"][0]) == Layout(2, 1, 8)  # the pool's own first
    assert "started" in response.content.decode()


def test_a_second_profile_is_refused_while_one_runs(admin_client, llama_server_pool, monkeypatch):
    monkeypatch.setattr(jobs, "launch", lambda run, command: None)
    stored_profile(state=ProfileRun.RUNNING, pid=os.getpid())
    response = admin_client.post(reverse("profile_start"), {"budget_s": 300}, **HTMX)
    assert "already running" in response.content.decode()
    assert ProfileRun.objects.count() == 1


def test_a_budget_below_a_minute_is_refused_on_the_form(admin_client, db):
    response = admin_client.post(reverse("profile_start"), {"budget_s": 10}, **HTMX)
    assert "greater than or equal to 60" in response.content.decode()
    assert not ProfileRun.objects.exists()


def test_a_running_profile_shows_its_progress_and_stop_asks_it_to_stop(admin_client, db):
    run = stored_profile(
        state=ProfileRun.RUNNING, pid=os.getpid(), progress="layout 2 of 2: 4 at once measured"
    )
    page = admin_client.get(reverse("profile_panel"), **HTMX).content.decode()
    assert "layout 2 of 2: 4 at once measured" in page and 'hx-trigger="every 2s"' in page
    admin_client.post(reverse("profile_stop"), **HTMX)
    run.refresh_from_db()
    assert run.stop_requested


def test_a_profile_whose_process_died_is_marked_failed(admin_client, db):
    run = stored_profile(state=ProfileRun.RUNNING, pid=2**22 + 1)  # no such process
    page = admin_client.get(reverse("profile_panel"), **HTMX).content.decode()
    run.refresh_from_db()
    assert run.state == ProfileRun.FAILED and "ended before the profile did" in page


def test_the_table_and_the_plot_show_every_measured_figure(admin_client, db):
    stored_profile()
    response = admin_client.get(reverse("dashboard"))
    page = response.content.decode()
    assert FAST.label in page and "23.0" in page and "2.00" in page
    chart = response.context["profile_chart"]
    assert chart["levels"] == list(LEVELS)
    assert [s["tokens"] for s in chart["series"]] == [[10, 15, 19, 20, 20], [11, 16, 21, 22, 23]]
    assert 'id="profile-data"' in page and "js/profile.js" in page


def test_apply_makes_the_pool_the_best_layout_through_the_actions(admin_client, llama_server_pool):
    stored_profile()
    admin_client.post(reverse("profile_apply"), {"target": "answers", "load": 8}, **HTMX)
    wanted = Member.objects.filter(should_run=True)
    assert wanted.count() == 1
    assert {(m.n_threads, m.slots, m.engine) for m in wanted} == {(2, 16, states.LLAMA_SERVER)}
    assert Member.objects.filter(should_run=False).count() == 1  # the newest, drained


def test_apply_for_ttft_at_a_light_load_picks_the_layout_quickest_to_start(admin_client, llama_server_pool):
    stored_profile()
    admin_client.post(reverse("profile_apply"), {"target": "ttft", "load": 2}, **HTMX)
    wanted = Member.objects.filter(should_run=True)
    assert {(m.n_threads, m.slots) for m in wanted} == {(1, 8)} and wanted.count() == 2


def test_the_capacity_from_the_profile_says_how_many_hosts_a_peak_needs(admin_client, db):
    stored_profile()
    query = {"peak": 50, "answer_tokens": 300, "within_s": 120, "spares": 2}
    response = admin_client.get(reverse("profile_capacity"), query, **HTMX)
    sized = response.context["sizing"]
    # 23 tokens/s at 16 at once is 1 x 2 x 16's best; 8 at once (22 tokens/s) take 109 s.
    assert sized.layout == FAST and sized.hosts == 7 and sized.per_host == 8
    assert "9 hosts" in response.content.decode()


def test_the_cli_shows_the_latest_profile_and_applies_its_best(llama_server_pool):
    stored_profile()
    out = io.StringIO()
    call_command("pool", "profile", "--show", "--apply", stdout=out)
    text = out.getvalue()
    assert "tok/s @16" in text and FAST.label in text
    assert f"Best for most answers per minute: {FAST.label}" in text and "Applied" in text
    assert set(Member.objects.filter(should_run=True).values_list("slots", flat=True)) == {16}


def test_the_cli_says_what_to_do_when_nothing_was_measured(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no profile has been measured yet"):
        call_command("pool", "profile", "--show")


def test_a_missing_model_fails_the_profile_in_one_line(settings, db, tmp_path):
    from django.core.management.base import CommandError

    settings.VIBEADMIN_MODEL = tmp_path / "absent.gguf"
    with pytest.raises(CommandError, match="does not exist"):
        call_command("pool", "profile", "--budget", "120", "--layouts", "1", stdout=io.StringIO())
    run = ProfileRun.objects.get()
    assert run.state == ProfileRun.FAILED and "does not exist" in run.message
