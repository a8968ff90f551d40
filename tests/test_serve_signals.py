"""`manage.py serve` stops on SIGINT and SIGTERM whatever it inherited: a shell's
background job (`make test &`) starts its children with SIGINT ignored, and serve started
so once ignored Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.helpers import ROOT, answers, clean_env, free_port, wait_until


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_started_with_the_signal_ignored_still_stops_on_it(data_dir, tmp_path, signum):
    port = free_port()
    output = tmp_path / "serve.out"
    with output.open("w") as out:
        child = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "--no-supervisor"],
            cwd=ROOT,
            env=clean_env(data_dir, VIBEADMIN_PORT=str(port)),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signum, signal.SIG_IGN),  # as a background job inherits it
        )
    try:
        wait_until(
            lambda: answers(f"http://127.0.0.1:{port}/solve/") or child.poll() is not None,
            60,
            what="serve to answer",
        )
        assert child.poll() is None, output.read_text()

        child.send_signal(signum)

        assert child.wait(timeout=30) is not None, output.read_text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
