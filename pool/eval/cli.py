"""`manage.py pool eval`: the accuracy check from the command line (pool/eval/runner.py)."""

from __future__ import annotations

import argparse
import signal

from django.core.management.base import CommandError

from pool.eval.runner import eval_run, gateway_target, member_target
from pool.eval.runs import eval_create, eval_problems
from pool.models import EvalRun, Member, states
from pool.models.quality import FAILED, RUNNING
from pool.services import jobs


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "eval",
        help="ask the shipped math problems through the gateway (as a batch client), check the answers",
    )
    parser.add_argument("--quick", action="store_true", help="the first 50 problems, not all 240")
    parser.add_argument("--member", default="", help="ask this member directly instead of the gateway")
    parser.add_argument("--limit", type=int, default=None, help="ask at most N problems")
    parser.add_argument(
        "--parallel", type=int, default=0, help="problems asked at once (default: one per ready member)"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=1,
        help="independent answers per problem: pass@1 over all of them and maj@k of their majority",
    )
    parser.add_argument("--url", default="", help="the gateway's base URL (default: this host's API port)")
    # The dashboard's Start button makes the run's row first, so the page shows it at once.
    parser.add_argument("--run", type=int, default=None, help=argparse.SUPPRESS)


def handle(options: dict, say) -> None:
    if options["limit"] is not None and options["limit"] < 1:
        raise CommandError("--limit must be 1 or more")
    if not 1 <= options["samples"] <= 16:
        raise CommandError("--samples must be 1 to 16")
    if options["parallel"] < 0:
        raise CommandError("--parallel must be 1 or more (0: one per ready member)")
    if options["run"] is not None:
        run = EvalRun.objects.filter(pk=options["run"], state=RUNNING).first()
        if run is None:
            raise CommandError(f"no running eval run {options['run']}")
        problems = eval_problems(quick=run.problem_set == "quick", limit=run.planned)
    else:
        try:
            run, problems = eval_create(
                quick=options["quick"],
                member=options["member"],
                limit=options["limit"],
                samples=options["samples"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    jobs.claim(run)
    signal.signal(signal.SIGTERM, _stop)  # `kill` stops it as Ctrl-C does: the run is marked stopped
    target = (
        member_target(Member.objects.get(name=run.member)) if run.member else gateway_target(options["url"])
    )
    say(f"Eval {run.pk}: {run.planned} problems, {run.model_name}, via {run.where} (Ctrl-C stops it)")
    parallel = options["parallel"] or (1 if run.member else max(1, ready_members()))
    run = eval_run(run, problems, target, say, parallel=parallel)
    say(summary(run))
    if run.state == FAILED:
        raise CommandError(run.message)


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def ready_members() -> int:
    return Member.objects.filter(state=states.READY).count()


def summary(run: EvalRun) -> str:
    line = f"Eval {run.pk} {run.state}: pass@1 {run.correct}/{run.sample_answers}"
    if run.answered:
        low, high = run.interval
        line += (
            f" = {run.pass_at_1:.0%} (95% CI {low:.0%}-{high:.0%}), "
            f"{run.tokens_per_answer:.0f} tokens and {run.seconds_per_answer:.1f} s per answer"
        )
    if run.maj_at_k is not None:
        line += f", maj@{run.samples} {run.majority_correct}/{run.answered} = {run.maj_at_k:.0%}"
        if run.unanimous_right is not None:
            line += f", {run.samples} of {run.samples} votes right {run.unanimous_correct}/{run.unanimous}"
    if run.wall_s is not None:
        line += f", {run.wall_s / 60:.1f} minutes in all"
    return line + (f"; {run.message}" if run.message else "")
