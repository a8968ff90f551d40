"""Quality: the built-in accuracy check's runs (pool/eval), the latest per model file and
per member, pass@1 over time, and a quick run started or stopped from here."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from pool.dashboard.views.common import after_post, role_required
from pool.eval.runs import eval_start_quick, eval_stop, running
from pool.models import EvalRun, LeakRate, roles
from pool.models.quality import DONE, RUNNING

PAGE, PROGRESS = "dashboard/quality.html", "dashboard/partials/quality_progress.html"
HISTORY = 200  # runs read for the tables and the chart


def latest_per_model_and_member(runs: list[EvalRun]) -> list[EvalRun]:
    """The newest finished run of each (model file, member or the pool) pair."""
    seen: dict[tuple[str, str], EvalRun] = {}
    for run in runs:  # newest first
        if run.state == DONE:
            seen.setdefault((run.model_sha256 or run.model_name, run.where), run)
    return list(seen.values())


def chart_columns(runs: list[EvalRun]) -> dict:
    """uPlot's aligned columns: finish times, then pass@1 (%) per model file (null elsewhere)."""
    done = sorted((r for r in runs if r.state == DONE and r.answered), key=lambda r: r.finished_at)
    labels = list(dict.fromkeys(_model_label(r) for r in done))
    columns: list[list] = [[r.finished_at.timestamp() for r in done]]
    for label in labels:
        columns.append(
            [round(100 * r.correct / r.answered, 1) if _model_label(r) == label else None for r in done]
        )
    return {"labels": labels, "columns": columns}


def leak_rates() -> list[dict]:
    """The newest measurement of each mode and reply cap (stored by `pool leak-rates`)."""
    newest: dict[tuple[str, int], LeakRate] = {}
    for row in LeakRate.objects.all():  # newest first
        newest.setdefault((row.mode, row.max_tokens), row)
    return [
        {
            "mode": row.mode,
            "leaks": row.leaks,
            "problems": row.problems,
            "max_tokens": row.max_tokens,
            "model": row.model,
            "when": row.measured_at.date().isoformat(),
        }
        for row in sorted(newest.values(), key=lambda r: (r.max_tokens, r.mode))
    ]


def _model_label(run: EvalRun) -> str:
    return f"{run.model_name} ({run.model_sha256[:8] or '?'})"


def progress_context() -> dict:
    return {"running": running()}


@role_required(roles.VIEW)
@require_GET
def quality(request: HttpRequest) -> HttpResponse:
    runs = list(EvalRun.objects.all()[:HISTORY])
    context = {
        "section": "quality",
        "latest": latest_per_model_and_member(runs),
        "runs": runs[:20],
        "chart": chart_columns(runs),
        "leaks": leak_rates(),
        **progress_context(),
    }
    return render(request, PAGE, context)


@role_required(roles.VIEW)
@require_GET
def quality_progress(request: HttpRequest) -> HttpResponse:
    return render(request, PROGRESS, progress_context())


@role_required(roles.OPERATE)
@require_POST
def quality_start(request: HttpRequest) -> HttpResponse:
    run = eval_start_quick()
    if run is None:
        messages.error(request, "An eval is already running: stop it first, or wait for it to end.")
    else:
        messages.success(request, f"Quick eval {run.pk} started: 50 problems as a batch client.")
    return after_post(request, reverse("quality"), PROGRESS, progress_context())


@role_required(roles.OPERATE)
@require_POST
def quality_stop(request: HttpRequest, pk: int) -> HttpResponse:
    run = EvalRun.objects.filter(pk=pk, state=RUNNING).first()
    if run is not None:
        eval_stop(run)
        messages.success(request, f"Eval {pk} stops within a second; the answers in flight are dropped.")
    return after_post(request, reverse("quality"), PROGRESS, progress_context())
