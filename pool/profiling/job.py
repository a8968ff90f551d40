"""One profile from start to end, as the CLI runs it and as the dashboard's button starts
it (in a process of its own, `manage.py pool profile --run ID`): plan it, measure layout
after layout, keep every point in the database as it comes, and end it as done, partial
(stopped, out of budget, interrupted) or failed, with one line that says why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter

import psutil
from django.conf import settings
from django.utils import timezone

from pool.models import Member, ProfileRun, states
from pool.profiling import plan as planning
from pool.profiling.plan import Layout
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
    for run in ProfileRun.objects.filter(state=ProfileRun.RUNNING):
        if run.pid and _alive(run.pid):
            return run
        finish(run, ProfileRun.FAILED, "its process ended before the profile did (killed?)")
    return None


def create(
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
    return ProfileRun.objects.create(
        cores=cores,
        gpu=gpu,
        budget_s=budget_s,
        answer_tokens=answer_tokens,
        plan={**plan.as_dict(), "prune": prune},
        layouts={layout.key: "not measured" for layout in plan.layouts},
        pid=os.getpid(),
        progress="starting",
    )


def launch(run: ProfileRun) -> None:
    """Run `run` in a process of its own (the dashboard's button): a web request returns at once."""
    log = settings.DATA_DIR / "logs" / "profile.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        child = subprocess.Popen(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "pool", "profile", "--run", str(run.pk)],
            cwd=settings.BASE_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    threading.Thread(target=child.wait, daemon=True).start()  # reaped when it ends
    ProfileRun.objects.filter(pk=run.pk).update(pid=child.pid)


def request_stop(run: ProfileRun) -> None:
    ProfileRun.objects.filter(pk=run.pk, state=ProfileRun.RUNNING).update(stop_requested=True)


def finish(run: ProfileRun, state: str, note: str) -> None:
    run.state, run.note, run.finished_at = state, note[:500], timezone.now()
    run.progress = ""
    run.save(update_fields=["state", "note", "finished_at", "progress", "layouts", "points"])


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


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
