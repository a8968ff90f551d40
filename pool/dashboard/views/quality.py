"""Quality: the built-in accuracy check's runs (pool/eval), the latest per model file and
per member, pass@1 over time, and a quick run started or stopped from here."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from pool.dashboard.views.common import after_post, role_required
from pool.eval.runs import eval_start_quick, eval_stop, running
from pool.models import EvalRun, roles
from pool.models.quality import DONE, RUNNING

PAGE, PROGRESS = "dashboard/quality.html", "dashboard/partials/quality_progress.html"
# The hints mode's leak rate, as `python -m bench.leak_rate` last measured it (and solution
# mode with room to finish): how often a first reply already gives the final answer.
LEAK_FILES = ("leak_rate.json", "leak_rate_solution_600.json")
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
    """One row per mode measured, newest files' figures; a missing or unreadable file shows nothing."""
    rows = []
    for name in LEAK_FILES:
        try:
            measured = json.loads((settings.BASE_DIR / "bench" / "results" / name).read_text())
            for mode, figures in measured["modes"].items():
                if mode.endswith("_rejected"):
                    continue  # a wording tried and not kept
                rows.append(
                    {
                        "mode": mode,
                        "leaks": int(figures["leaks"]),
                        "problems": int(measured["problems"]),
                        "max_tokens": int(measured["max_tokens"]),
                        "model": str(measured["model"]),
                        "when": str(measured["when"])[:10],
                    }
                )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return rows


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
