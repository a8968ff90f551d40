"""One job's lifecycle, the same for every job an operator starts (the accuracy check's
EvalRun, the layout profile's ProfileRun, and any later one such as a rollout's gate): a
row of a `pool.models.job.Job` model that runs in a process of its own.

    new_job()             its row: state "running", no process yet
      -> launch()         the dashboard's button: `manage.py pool <command> --run ID` started
         or claim()       the command line runs it in its own process
      -> stop_requested() polled by the job; request_stop() is the dashboard's Stop
      -> finish()         the job ends itself: its state and why
    running() finds the job in progress and marks one whose process died as failed
    (is_orphaned: killed, or the machine restarted), so nothing is "running" forever.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from typing import TypeVar

import psutil
from django.conf import settings
from django.utils import timezone

from pool.models import PoolEvent
from pool.models.job import FAILED, RUNNING, Job
from pool.services import events

J = TypeVar("J", bound=Job)


def new_job(model: type[J], **fields) -> J:
    """A new job's row: running, not yet taken up by a process. Its start is an event, with
    who started it."""
    run = model._default_manager.create(**fields)
    events.record(PoolEvent.ACTION, f"{run._meta.verbose_name} {run.pk}: started")
    return run


def launch(run: Job, command: str) -> None:
    """Run `manage.py pool <command> --run ID` on its own, so that it outlives the web request
    that starts it; its output goes to a log beside the members' logs."""
    pid = spawn([command, "--run", str(run.pk)], f"{command}-{run.pk}")
    # At once, so a process that dies before it claims the run is still seen to have died.
    _record_process(run, pid)


def spawn(args: list[str], log_name: str) -> int:
    """`manage.py pool ARGS` as a process of its own (a new session: a Ctrl-C or the end of
    the process that starts it does not end it), reaped when it ends; returns its pid."""
    folder = settings.DATA_DIR / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{log_name}.log").open("ab") as log:
        child = subprocess.Popen(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "pool", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=settings.BASE_DIR,
        )
    threading.Thread(target=child.wait, daemon=True).start()  # no zombie left behind
    return child.pid


def claim(run: Job) -> None:
    """The job's own process takes it up: this host and pid are now the ones to watch."""
    _record_process(run, os.getpid())


def _record_process(run: Job, pid: int) -> None:
    run.host, run.pid = socket.gethostname(), pid
    type(run)._default_manager.filter(pk=run.pk).update(host=run.host, pid=pid)


def request_stop(run: Job) -> bool:
    """The dashboard's Stop: a flag the job polls (an event, with who asked). False if it
    was not running."""
    if not type(run)._default_manager.filter(pk=run.pk, state=RUNNING).update(stop_requested=True):
        return False
    events.record(PoolEvent.ACTION, f"{run._meta.verbose_name} {run.pk}: stop requested")
    return True


def save_progress(run: Job, *fields: str) -> None:
    """The job's figures so far (a profile's points, a line of progress), for its page."""
    run.save(update_fields=list(fields))


def stop_requested(run: Job) -> bool:
    return type(run)._default_manager.filter(pk=run.pk, stop_requested=True).exists()


def finish(run: J, state: str, message: str = "", *, fields: tuple[str, ...] = ()) -> J:
    """End the job as `state`, with one line that says why; `fields` are the job's own
    results saved with it (a profile's points)."""
    run.state, run.message, run.finished_at = state, message, timezone.now()  # type: ignore[attr-defined]
    run.save(update_fields=["state", "message", "finished_at", *fields])
    run.refresh_from_db()  # with the figures its process added meanwhile (an eval's answers)
    return run


def is_orphaned(run: Job) -> bool:
    """Running, taken up by a process on this host (a row from before hosts were kept: here),
    and that process is gone."""
    here = run.host in ("", socket.gethostname())
    return run.is_running and here and run.pid is not None and not alive(run.pid)


def running(model: type[J]) -> J | None:
    """The job of this kind in progress, if any; one whose process died is marked failed."""
    for run in model._default_manager.filter(state=RUNNING):
        if not is_orphaned(run):
            return run
        finish(run, FAILED, f"its process ended before the {model.NOUN} did")
    return None


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
