"""Ending a child process that tests and benchmarks started: SIGTERM, a grace period, then
SIGKILL, so a stuck child never outlives its test or bench run."""

from __future__ import annotations

import subprocess


def end_process(proc: subprocess.Popen, grace: float) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
