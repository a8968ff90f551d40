"""An eval run's rows: created (shown on the Quality page at once) and finished. Kept apart
from the runner, which asks the gateway, so that the dashboard can start and stop runs
without importing the gateway's code."""

from __future__ import annotations

import functools
import hashlib

from django.utils import timezone

from pool.eval.problems import QUICK, Problem, load
from pool.model_file import DEFAULT_MODEL, ModelChoice, chosen_model
from pool.models import EvalRun, Member


def eval_create(
    *, quick: bool, member: str = "", limit: int | None = None, samples: int = 1
) -> tuple[EvalRun, list[Problem]]:
    """A new run's row (shown on the Quality page at once) and the problems it will ask."""
    problems = eval_problems(quick=quick, limit=limit)
    if member and not Member.objects.filter(name=member).exists():
        raise ValueError(f"no member named {member!r}")
    model = chosen_model()
    run = EvalRun.objects.create(
        model_name=model.path.name,
        model_sha256=model_sha256(model),
        member=member,
        problem_set="quick" if quick else "full",
        planned=len(problems),
        samples=samples,
    )
    return run, problems


def eval_problems(*, quick: bool, limit: int | None = None) -> list[Problem]:
    problems = load()[:QUICK] if quick else load()
    return problems if limit is None else problems[:limit]


def model_sha256(model: ModelChoice) -> str:
    """The served GGUF's sha256: known for the default, read once per file version otherwise."""
    if model.is_default:
        return DEFAULT_MODEL.sha256
    try:
        st = model.path.stat()
    except OSError:
        return ""  # a remote-only pool's stand-in name: the file is not here
    return _file_sha256(str(model.path), st.st_size, st.st_mtime_ns)


@functools.cache
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()


def finish(run: EvalRun, state: str, message: str = "") -> EvalRun:
    EvalRun.objects.filter(pk=run.pk).update(state=state, finished_at=timezone.now(), message=message)
    run.refresh_from_db()
    return run
