"""A profile's measuring, in the process `pool profile` runs: it starts and stops its own
llama-server processes (the supervisor's command line), so the dashboard, which only
creates, launches and stops runs (job.py), never imports it."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict

import psutil
from django.db import close_old_connections, connection

from pool.model_file import ModelFileError, ensure_model
from pool.models import ProfileRun
from pool.profiling import plan as planning
from pool.profiling.job import ProfileError, finish
from pool.profiling.plan import Layout, Point
from pool.profiling.runner import LayoutFailed, ProfileStopped, profile_layout
from pool.services import jobs

STOP_POLL_S = 1.0


def execute(run: ProfileRun, *, echo: Callable[[str], None] = print) -> ProfileRun:
    """Measure every planned layout of `run`; on Ctrl-C the points so far are kept, marked
    partial, and KeyboardInterrupt goes on to the caller. No process outlives this."""
    jobs.claim(run)
    try:
        model = ensure_model(progress=echo)
    except ModelFileError as exc:
        finish(run, ProfileRun.FAILED, str(exc))
        raise ProfileError(str(exc)) from None
    run.model_path = str(model.path)
    jobs.save_progress(run, "model_path")
    plan = planning.Plan(
        planning.planned_layouts(run),
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
    with stop_on_signals(stop) as interrupted:
        best_at_prune: float | None = None
        try:
            for n, layout in enumerate(plan.layouts, 1):
                if stop.is_set():
                    raise ProfileStopped("stopped")
                echo(f"layout {n}/{len(plan.layouts)}: {layout.label}")

                def on_point(point: Point, n: int = n, layout: Layout = layout) -> None:
                    run.points.append(asdict(point))
                    run.progress = (
                        f"layout {n} of {len(plan.layouts)} ({layout.label}): {point.level} at once measured"
                    )
                    jobs.save_progress(run, "points", "progress")
                    ttft = (
                        "–"
                        if point.ttft_p50_s is None
                        else f"{'>' if point.ttft_censored else ''}{point.ttft_p50_s:.2f} s"
                    )
                    echo(f"  {point.level:2} at once: {point.tokens_per_s:6.1f} tokens/s, TTFT p50 {ttft}")

                run.progress = f"layout {n} of {len(plan.layouts)} ({layout.label}): starting its servers"
                jobs.save_progress(run, "progress")
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
                    echo(
                        "  stopped early: no token in a window, or clearly below the best so far at 4 at once"
                    )
                at_prune = [
                    p.tokens_per_s for p in planning.measured_points(run) if p.level == planning.PRUNE_AT
                ]
                best_at_prune = max(at_prune, default=None)
        except (ProfileStopped, KeyboardInterrupt) as exc:
            if isinstance(exc, KeyboardInterrupt) or interrupted.is_set():
                finish(run, ProfileRun.PARTIAL, "interrupted (Ctrl-C): the results are partial")
                raise KeyboardInterrupt from None
            why = "stopped by the operator" if exc.reason == "stopped" else "its time budget ran out"
            finish(run, ProfileRun.PARTIAL, f"{why}: the results are partial")
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


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """While measuring, Ctrl-C and SIGTERM set `stop` (and the event this yields): the
    measuring ends at its next check, within a second, its servers stopped. Not a
    KeyboardInterrupt raised wherever the signal lands: landing inside asyncio as it built
    a point's event loop, one left a half-made loop whose garbage printed a traceback after
    the command's one line. A second signal interrupts at once, for a stop that hangs."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted  # only the main thread takes signals
        return

    def on_signal(signum, frame) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interrupted
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def watch_for_stop(pk: int, stop: threading.Event) -> None:
    """The dashboard's Stop sets a flag in the database; this thread passes it on."""
    try:
        while not stop.wait(STOP_POLL_S):
            close_old_connections()
            if ProfileRun.objects.filter(pk=pk, stop_requested=True).exists():
                stop.set()
    finally:
        connection.close()
