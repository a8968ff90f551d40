"""The Quality page: the latest finished run per model file and member, pass@1 over time
for the chart, a quick run started (its process is replaced by a recorder here: the real
`pool eval` is tried in test_eval.py) and a running one stopped."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from pool.models import EvalRun, LeakRate, PoolEvent
from pool.models.quality import DONE, RUNNING
from pool.services import jobs

pytestmark = pytest.mark.django_db


def finished(model: str, sha: str, member: str, correct: int, minutes_ago: int) -> EvalRun:
    return EvalRun.objects.create(
        model_name=model,
        model_sha256=sha,
        member=member,
        problem_set="quick",
        planned=50,
        answered=50,
        correct=correct,
        completion_tokens=50 * 200,
        seconds=50 * 12.5,
        state=DONE,
        finished_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def test_the_page_shows_the_latest_run_per_model_file_and_member_and_the_chart(admin_client):
    finished("q4.gguf", "a" * 64, "", 40, minutes_ago=30)
    newest = finished("q4.gguf", "a" * 64, "", 45, minutes_ago=10)
    other = finished("q2.gguf", "b" * 64, "m1", 30, minutes_ago=5)

    response = admin_client.get(reverse("quality"))

    assert response.status_code == 200
    assert [run.pk for run in response.context["latest"]] == [other.pk, newest.pk]
    page = response.content.decode()
    assert "45/50 = 90%" in page and "200" in page and "12.5" in page
    chart = response.context["chart"]
    assert chart["labels"] == ["q4.gguf (aaaaaaaa)", "q2.gguf (bbbbbbbb)"]
    assert chart["columns"][1] == [80.0, 90.0, None] and chart["columns"][2] == [None, None, 60.0]


def test_starting_a_quick_eval_makes_its_run_and_starts_its_process(admin_client, monkeypatch):
    started: list[EvalRun] = []
    monkeypatch.setattr(jobs, "launch", lambda run, command: started.append(run))

    response = admin_client.post(reverse("quality_start"))

    assert response.status_code == 302
    (run,) = EvalRun.objects.all()
    assert (run.state, run.problem_set, run.planned, run.member) == (RUNNING, "quick", 50, "")
    assert started == [run]
    page = admin_client.get(reverse("quality_progress")).content.decode()
    assert f"Eval {run.pk}" in page and "Stop" in page


def test_starting_and_stopping_an_eval_are_events_with_who_did_it(admin_client, monkeypatch):
    monkeypatch.setattr(jobs, "launch", lambda run, command: None)
    admin_client.post(reverse("quality_start"))
    run = EvalRun.objects.get()
    admin_client.post(reverse("quality_stop", args=[run.pk]))

    said = list(PoolEvent.objects.filter(kind=PoolEvent.ACTION).values_list("message", "actor"))
    assert (f"eval run {run.pk}: started", "admin") in said
    assert (f"eval run {run.pk}: stop requested", "admin") in said


def test_a_second_eval_is_refused_while_one_runs(admin_client, monkeypatch):
    monkeypatch.setattr(jobs, "launch", lambda run, command: None)
    admin_client.post(reverse("quality_start"))

    response = admin_client.post(reverse("quality_start"), follow=True)

    assert "An eval is already running" in response.content.decode()
    assert EvalRun.objects.count() == 1


def test_stop_asks_the_running_eval_to_stop(admin_client, monkeypatch):
    def started(run: EvalRun, command: str) -> None:
        EvalRun.objects.filter(pk=run.pk).update(host="elsewhere", pid=4242)

    monkeypatch.setattr(jobs, "launch", started)
    admin_client.post(reverse("quality_start"))
    run = EvalRun.objects.get()

    response = admin_client.post(reverse("quality_stop", args=[run.pk]), HTTP_HX_REQUEST="true")

    run.refresh_from_db()
    assert run.stop_requested and run.state == RUNNING  # its process ends it
    assert "Stopping" in response.content.decode()


def test_stop_ends_at_once_a_run_no_process_took_up(admin_client, monkeypatch):
    monkeypatch.setattr(jobs, "launch", lambda run, command: None)
    admin_client.post(reverse("quality_start"))
    run = EvalRun.objects.get()

    admin_client.post(reverse("quality_stop", args=[run.pk]))

    run.refresh_from_db()
    assert (run.state, run.message) == ("stopped", "stopped before its process started")


def test_the_page_is_for_staff_only(client):
    assert client.get(reverse("quality")).status_code == 302
    assert client.post(reverse("quality_start")).status_code == 302
    assert EvalRun.objects.count() == 0


def test_the_overview_says_which_model_is_served_and_why(admin_client, settings):
    settings.VIBEADMIN_MODEL = None

    page = admin_client.get(reverse("dashboard")).content.decode()

    assert "qwen2.5-coder-1.5b-instruct" in page
    assert "a stand-in with VibeThinker-1.5B&#x27;s architecture and size" in page
    assert reverse("quality") in page


def test_a_run_whose_process_died_is_marked_failed_not_left_running(admin_client):
    import socket
    import subprocess
    import sys

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    run = EvalRun.objects.create(
        model_name="q4.gguf", problem_set="quick", planned=50, host=socket.gethostname(), pid=int(gone.stdout)
    )

    page = admin_client.get(reverse("quality_progress")).content.decode()

    run.refresh_from_db()
    assert (run.state, run.message) == ("failed", "its process ended before the run did")
    assert "Start a quick eval" in page


def test_the_quality_page_reports_the_hints_modes_leak_rate(admin_client):
    """The shipped measurement (bench/results/leak_rate*.json), stored as rows by `pool
    leak-rates` (the page never reads bench/): hints mode's first replies gave the answer
    far less often than solution mode's."""
    from pool.dashboard.views.quality import leak_rates

    LeakRate.objects.all().delete()
    results = settings.BASE_DIR / "bench" / "results"
    call_command(
        "pool", "leak-rates", str(results / "leak_rate.json"), str(results / "leak_rate_solution_600.json")
    )
    call_command("pool", "leak-rates", str(results / "leak_rate.json"))  # again: nothing doubles
    assert LeakRate.objects.count() == 3
    rows = {(row["mode"], row["max_tokens"]): row for row in leak_rates()}
    hints, solution = rows[("hints", 200)], rows[("solution", 600)]
    assert hints["leaks"] < solution["leaks"]
    html = admin_client.get(reverse("quality")).content.decode()
    assert f"{hints['leaks']} of {hints['problems']}" in html
    assert f"{solution['leaks']} of {solution['problems']}" in html
    assert "hints_rejected" not in html
