"""`manage.py pool profile` for real, as an operator runs it: REAL llama-server processes
(the binary `make install` builds) serving the small default gemma GGUF, with a tiny
budget so that one layout is measured. It must measure every point of that layout, store
them, and leave no server behind; Ctrl-C half-way must keep what was measured, marked
partial, say so in one line, and stop its servers too."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import psutil
import pytest

from tests.helpers import ROOT, clean_env, manage

pytestmark = [pytest.mark.real_model]

# One layout (the first candidate) in 5 points of 3 s, within a budget that leaves room for
# slow starts on cores shared with other work.
BUDGET = "120"
SHORT = ["--layouts", "1", "--point-s", "3", "--answer-tokens", "8"]


@pytest.fixture
def model_env(gemma_model, built_llama_server) -> dict[str, str]:
    return {
        "VIBEADMIN_MODEL": str(gemma_model.path),
        "VIBEADMIN_CHAT_FORMAT": gemma_model.chat_format,
        "VIBEADMIN_N_GPU_LAYERS": "0",
    }


def profiles(data_dir) -> list[tuple[str, str, str]]:
    with closing(sqlite3.connect(data_dir / "db.sqlite3", timeout=5)) as db:
        return db.execute("SELECT state, points, message FROM pool_profilerun ORDER BY id").fetchall()


def servers_left(data_dir) -> list[int]:
    """llama-server processes started for this data folder (their environment names it)."""
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
            is_server = bool(cmdline) and cmdline[0].endswith("llama-server")
            if is_server and proc.environ().get("VIBEADMIN_DATA_DIR") == str(data_dir):
                left.append(proc.pid)
        except psutil.Error:
            continue
    return left


def test_a_short_profile_measures_each_point_of_a_layout_stores_them_and_leaves_no_server(
    data_dir, model_env
):
    # The pool's own layout is measured first: two members of one thread (a 2-thread
    # member on cores shared with other work can stall, and stops at its first empty point).
    for _ in range(2):
        assert manage("pool", "add", data_dir=data_dir, **model_env).returncode == 0
    result = manage(
        "pool",
        "profile",
        "--budget",
        BUDGET,
        *SHORT,
        data_dir=data_dir,
        timeout=300,
        **model_env,
    )
    assert result.returncode == 0, result.stderr
    assert "tok/s @16" in result.stdout and "Best for most answers per minute" in result.stdout
    [(state, points, note)] = profiles(data_dir)
    assert state == "done", note
    measured = json.loads(points)
    levels = [p["level"] for p in measured]
    assert len(levels) >= 2 and levels == [1, 2, 4, 8, 16][: len(levels)]
    assert len(levels) == 5 or measured[-1]["tokens_per_s"] == 0  # all, or it stalled
    # On cores shared with other work a point may see no token in its window (a first
    # token not yet come counts as its wait so far): each point has a TTFT, and tokens came.
    assert all(p["ttft_p50_s"] is not None for p in measured)
    assert sum(p["tokens_per_s"] for p in measured) > 0
    assert servers_left(data_dir) == []


def test_ctrl_c_half_way_keeps_the_points_marked_partial_in_one_line_and_stops_its_servers(
    data_dir, model_env
):
    child = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "pool",
            "profile",
            "--budget",
            BUDGET,
            *SHORT,
        ],
        cwd=ROOT,
        env=clean_env(data_dir, **model_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a shell's background job (`make test &`, nohup): SIGINT inherited ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and child.poll() is None:
            rows = profiles(data_dir) if (data_dir / "db.sqlite3").exists() else []
            if rows and rows[0][1] not in ("[]", ""):
                break
            time.sleep(0.2)
        assert child.poll() is None, child.communicate()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "marked partial" in lines[0], err
    [(state, points, note)] = profiles(data_dir)
    assert state == "partial" and "Ctrl-C" in note and points not in ("[]", "")
    assert servers_left(data_dir) == []
