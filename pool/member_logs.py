"""Where a local member's output goes (a log file per member, under the data folder), and
its last lines. The supervisor writes the file and keeps a tail in the member's row; the
dashboard reads the file itself for this node's members, whose file is fresher."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from django.conf import settings

from pool.models import Member

LOG_TAIL_LINES = 40


def log_path(member: Member) -> Path:
    folder = settings.DATA_DIR / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"member-{member.name}.log"


def read_tail(member: Member, lines: int = LOG_TAIL_LINES) -> str:
    path = log_path(member)
    if not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 64 * 1024))
        tail = deque(f.read().decode(errors="replace").splitlines(), maxlen=lines)
    return "\n".join(tail)
