"""An eval run from the operator's side: created (shown on the Quality page at once),
started in a process of its own, stopped, ended. The lifecycle is every job's
(pool/services/jobs.py); kept apart from the runner, which asks the gateway, so that the
dashboard can start and stop runs without importing the gateway's code."""

from __future__ import annotations

from pool.eval.problems import QUICK, Problem, load
from pool.model_file import chosen_model
from pool.model_identity import identify
from pool.models import EvalRun, Member
from pool.models.quality import STOPPED
from pool.services import jobs


def eval_create(
    *, quick: bool, member: str = "", limit: int | None = None, samples: int = 1
) -> tuple[EvalRun, list[Problem]]:
    """A new run's row (shown on the Quality page at once) and the problems it will ask."""
    problems = eval_problems(quick=quick, limit=limit)
    if member and not Member.objects.filter(name=member).exists():
        raise ValueError(f"no member named {member!r}")
    model = chosen_model()
    run = jobs.new_job(
        EvalRun,
        model_name=model.path.name,
        model_sha256=identify(model) or "",
        member=member,
        problem_set="quick" if quick else "full",
        planned=len(problems),
        samples=samples,
    )
    return run, problems


def eval_problems(*, quick: bool, limit: int | None = None) -> list[Problem]:
    problems = load()[:QUICK] if quick else load()
    return problems if limit is None else problems[:limit]


def running() -> EvalRun | None:
    """The run in progress, if its process still lives; a dead one is marked failed."""
    return jobs.running(EvalRun)


def eval_start_quick() -> EvalRun | None:
    """The Quality page's Start: a quick run in a process of its own (`manage.py pool eval
    --run ID`), so it outlives the request. None where one is already running."""
    if running() is not None:
        return None
    run, _ = eval_create(quick=True)
    jobs.launch(run, "eval")
    return run


def eval_stop(run: EvalRun) -> None:
    """The Quality page's Stop: its process ends it within a second; a run no process took up
    yet ends here, since nothing else would."""
    if jobs.request_stop(run) and run.pid is None:
        jobs.finish(run, STOPPED, "stopped before its process started")
