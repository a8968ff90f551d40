"""One profile from start to end, as the CLI runs it and as the dashboard's button starts
it (in a process of its own, `manage.py pool profile --run ID`): plan it, measure layout
after layout, keep every point in the database as it comes, and end it as done, partial
(stopped, out of budget, interrupted) or failed, with one line that says why.
"""

from __future__ import annotations

import os
from collections import Counter

from django.conf import settings

from pool.models import Member, ProfileRun, states
from pool.profiling import plan as planning
from pool.profiling.plan import Layout
from pool.services import jobs
from pool.services.members import pool_apply_layout

DEFAULT_BUDGET_S = 300.0
DEFAULT_ANSWER_TOKENS = 64


class ProfileError(Exception):
    """A profile cannot start; the message says why and what to do."""


def current_layout() -> Layout | None:
    """The pool's own layout, when its local members share one (measured first)."""
    members = Member.objects.filter(
        kind=states.LOCAL, engine=states.LLAMA_SERVER, should_run=True, remove_requested=False
    )
    gpu = host_has_gpu()
    shapes = Counter((m.n_threads, m.slots or 1, m.n_gpu_layers if gpu else 0) for m in members)
    if not shapes:
        return None
    (threads, slots, layers), _ = shapes.most_common(1)[0]
    return Layout(len(members), threads, slots, layers)


def host_has_gpu() -> bool:
    if settings.VIBEADMIN_N_GPU_LAYERS == 0:
        return False
    from pool.loops.resources import gpu_report  # noqa: PLC0415 - NVML only when asked

    return gpu_report().available


def running() -> ProfileRun | None:
    """The profile in progress, if its process still lives; a dead one is marked failed."""
    return jobs.running(ProfileRun)


def new_profile(
    *,
    budget_s: float = DEFAULT_BUDGET_S,
    answer_tokens: int = DEFAULT_ANSWER_TOKENS,
    prune: bool = True,
    layouts: int | None = None,
    point_s: float | None = None,
) -> ProfileRun:
    """A profile planned for this host: the candidate layouts (the first `layouts` of
    them, if given) with points that fit `budget_s` (or of `point_s`, if given)."""
    if running() is not None:
        raise ProfileError("a profile is already running: wait for it, or stop it first")
    cores = os.cpu_count() or 1
    gpu = host_has_gpu()
    candidates = planning.candidates(cores, gpu=gpu, current=current_layout())[:layouts]
    try:
        plan = planning.make_plan(candidates, budget_s, point_s=point_s)
    except planning.PlanError as exc:
        raise ProfileError(str(exc)) from None
    run = jobs.new_job(
        ProfileRun,
        cores=cores,
        gpu=gpu,
        budget_s=budget_s,
        answer_tokens=answer_tokens,
        plan={**plan.as_dict(), "prune": prune},
        layouts={layout.key: "not measured" for layout in plan.layouts},
        progress="starting",
    )
    jobs.claim(run)  # this process, until launch() hands it to one of its own
    return run


def finish(run: ProfileRun, state: str, message: str) -> None:
    run.progress = ""
    jobs.finish(run, state, message, fields=("progress", "layouts", "points"))


def latest() -> ProfileRun | None:
    """The newest profile that measured something."""
    return ProfileRun.objects.exclude(points=[]).first()


def apply(run: ProfileRun, *, target: str, load: int = 1) -> tuple[Layout, list[str]]:
    """Make the pool the layout best for `target` in `run`, through pool/py."""
    best = planning.best_layout(
        planning.measured_points(run), planning.planned_layouts(run), target=target, load=load
    )
    if best is None:
        raise ProfileError("this profile measured no layout for that target: run a profile first")
    done = pool_apply_layout(
        members=best.members,
        threads=best.threads,
        slots=best.slots,
        gpu_layers=best.gpu_layers if run.gpu else None,
        reason=f"profile {run.pk}, best for {'answers per minute' if target == planning.ANSWERS else f'TTFT at {load}'}",
    )
    return best, done
