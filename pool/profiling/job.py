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
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict

import psutil
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from pool import actions
from pool.models import Member, ProfileRun, states
from pool.profiling import plan as planning
from pool.profiling.plan import Layout, Point
from pool.profiling.runner import LayoutFailed, ProfileStopped, profile_layout
from pool.supervisor import process
from pool.supervisor.model_file import ModelFileError, ensure_model

DEFAULT_BUDGET_S = 300.0
DEFAULT_ANSWER_TOKENS = 64
STOP_POLL_S = 1.0


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
    from pool.dashboard.resources import gpu_report  # noqa: PLC0415 - NVML only when asked

    return gpu_report().available


def running() -> ProfileRun | None:
    """The profile in progress, if its process still lives; a dead one is marked failed."""
    for run in ProfileRun.objects.filter(state=ProfileRun.RUNNING):
        if run.pid and process.is_alive(run.pid):
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
    process._children[child.pid] = child  # polled by is_alive, so it is reaped
    ProfileRun.objects.filter(pk=run.pk).update(pid=child.pid)


def request_stop(run: ProfileRun) -> None:
    ProfileRun.objects.filter(pk=run.pk, state=ProfileRun.RUNNING).update(stop_requested=True)


def finish(run: ProfileRun, state: str, note: str) -> None:
    run.state, run.note, run.finished_at = state, note[:500], timezone.now()
    run.progress = ""
    run.save(update_fields=["state", "note", "finished_at", "progress", "layouts", "points"])


def execute(run: ProfileRun, *, echo: Callable[[str], None] = print) -> ProfileRun:
    """Measure every planned layout of `run`; on Ctrl-C the points so far are kept, marked
    partial, and KeyboardInterrupt goes on to the caller. No process outlives this."""
    ProfileRun.objects.filter(pk=run.pk).update(pid=os.getpid())
    try:
        model = ensure_model(progress=echo)
    except ModelFileError as exc:
        finish(run, ProfileRun.FAILED, str(exc))
        raise ProfileError(str(exc)) from None
    run.model_path = str(model.path)
    run.save(update_fields=["model_path"])
    plan = planning.Plan(
        run.planned_layouts(),
        tuple(run.plan["levels"]),
        run.plan["point_s"],
        run.plan["warm_s"],
        run.budget_s,
    )
    # The budget counts from this process's start (Django's own start included). The plan
    # keeps RESERVE_S back; all but STOP_S of it may go to slow starts on busy cores.
    spent = max(0.0, time.time() - psutil.Process().create_time())
    deadline = time.monotonic() + run.budget_s - spent - planning.STOP_S
    stop = threading.Event()
    watcher = threading.Thread(target=watch_for_stop, args=(run.pk, stop), daemon=True)
    watcher.start()
    best_at_prune: float | None = None
    try:
        for n, layout in enumerate(plan.layouts, 1):
            echo(f"layout {n}/{len(plan.layouts)}: {layout.label}")

            def on_point(point: Point, n: int = n, layout: Layout = layout) -> None:
                run.points.append(asdict(point))
                run.progress = (
                    f"layout {n} of {len(plan.layouts)} ({layout.label}): {point.level} at once measured"
                )
                run.save(update_fields=["points", "progress"])
                ttft = (
                    "–"
                    if point.ttft_p50_s is None
                    else f"{'>' if point.ttft_censored else ''}{point.ttft_p50_s:.2f} s"
                )
                echo(f"  {point.level:2} at once: {point.tokens_per_s:6.1f} tokens/s, TTFT p50 {ttft}")

            run.progress = f"layout {n} of {len(plan.layouts)} ({layout.label}): starting its servers"
            run.save(update_fields=["progress"])
            try:
                outcome = profile_layout(
                    layout,
                    plan,
                    model,
                    answer_tokens=run.answer_tokens,
                    best_at_prune=best_at_prune if run.plan.get("prune", True) else None,
                    stop=stop,
                    deadline=deadline,
                    on_point=on_point,
                )
            except LayoutFailed as exc:
                run.layouts[layout.key] = f"failed: {exc}"
                echo(f"  failed: {exc}")
                continue
            run.layouts[layout.key] = outcome
            if outcome == "pruned":
                echo("  stopped early: no token in a window, or clearly below the best so far at 4 at once")
            at_prune = [p.tokens_per_s for p in run.measured_points() if p.level == planning.PRUNE_AT]
            best_at_prune = max(at_prune, default=None)
    except ProfileStopped as exc:
        why = "stopped by the operator" if exc.reason == "stopped" else "its time budget ran out"
        finish(run, ProfileRun.PARTIAL, f"{why}: the results are partial")
    except KeyboardInterrupt:
        finish(run, ProfileRun.PARTIAL, "interrupted (Ctrl-C): the results are partial")
        raise
    except Exception as exc:
        finish(run, ProfileRun.FAILED if not run.points else ProfileRun.PARTIAL, f"failed: {exc}")
        raise
    else:
        measured = [v for v in run.layouts.values() if v in ("done", "pruned")]
        if not run.points:
            finish(run, ProfileRun.FAILED, "no layout could be measured: see the layouts' errors")
        elif len(measured) < len(plan.layouts):
            finish(run, ProfileRun.PARTIAL, "some layouts failed: the results are partial")
        else:
            finish(run, ProfileRun.DONE, "")
    finally:
        stop.set()  # ends the watcher
    return run


def watch_for_stop(pk: int, stop: threading.Event) -> None:
    """The dashboard's Stop sets a flag in the database; this thread passes it on."""
    try:
        while not stop.wait(STOP_POLL_S):
            close_old_connections()
            if ProfileRun.objects.filter(pk=pk, stop_requested=True).exists():
                stop.set()
    finally:
        connection.close()


def latest() -> ProfileRun | None:
    """The newest profile that measured something."""
    return ProfileRun.objects.exclude(points=[]).first()


def apply(run: ProfileRun, *, target: str, load: int = 1) -> tuple[Layout, list[str]]:
    """Make the pool the layout best for `target` in `run`, through pool/actions.py."""
    best = planning.best_layout(run.measured_points(), run.planned_layouts(), target=target, load=load)
    if best is None:
        raise ProfileError("this profile measured no layout for that target: run a profile first")
    done = actions.pool_apply_layout(
        members=best.members,
        threads=best.threads,
        slots=best.slots,
        gpu_layers=best.gpu_layers if run.gpu else None,
        reason=f"profile {run.pk}, best for {'answers per minute' if target == planning.ANSWERS else f'TTFT at {load}'}",
    )
    return best, done
