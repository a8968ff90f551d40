"""`manage.py pool profile`: measure, show the table, and apply the best layout on request."""

from __future__ import annotations

import signal

from django.core.management.base import CommandError

from pool.models import ProfileRun
from pool.profiling import job, measuring, report
from pool.profiling import plan as planning


def add_arguments(parser) -> None:
    parser.add_argument(
        "--budget",
        type=float,
        default=job.DEFAULT_BUDGET_S,
        metavar="SECONDS",
        help=f"how long the whole profile may take (default {job.DEFAULT_BUDGET_S:g})",
    )
    parser.add_argument(
        "--answer-tokens",
        type=int,
        default=job.DEFAULT_ANSWER_TOKENS,
        metavar="N",
        help=f"tokens per answer while measuring (default {job.DEFAULT_ANSWER_TOKENS})",
    )
    parser.add_argument(
        "--typical-tokens",
        type=int,
        default=planning.TYPICAL_ANSWER_TOKENS,
        metavar="N",
        help=f"your typical answer's length, for answers per minute (default {planning.TYPICAL_ANSWER_TOKENS})",
    )
    parser.add_argument(
        "--layouts",
        type=int,
        default=None,
        metavar="N",
        help="measure only the first N candidates (yours first)",
    )
    parser.add_argument(
        "--point-s",
        type=float,
        default=None,
        metavar="SECONDS",
        help="each point's length (default: fit the budget)",
    )
    parser.add_argument("--show", action="store_true", help="show the latest profile instead of measuring")
    parser.add_argument(
        "--no-prune",
        action="store_true",
        help="measure every layout at every level (a full sweep, to check what pruning skipped)",
    )
    parser.add_argument("--apply", action="store_true", help="make the pool the best layout for --target")
    parser.add_argument(
        "--target",
        choices=planning.TARGETS,
        default=planning.ANSWERS,
        help="answers: most answers per minute (default); ttft: lowest time to first token at --load",
    )
    parser.add_argument("--load", type=int, default=8, metavar="N", help="answers at once, for --target ttft")
    parser.add_argument(
        "--run", type=int, default=None, help="(the dashboard's) measure this created profile"
    )


def handle(command, options: dict) -> None:
    write = command.stdout.write
    if options["show"]:
        run = job.latest()
        if run is None:
            raise CommandError("no profile has been measured yet: run `manage.py pool profile`")
    else:
        run = measure(options, write)
    write(table(run, typical_tokens=options["typical_tokens"]))
    best = planning.best_layout(
        planning.measured_points(run),
        planning.planned_layouts(run),
        target=options["target"],
        load=options["load"],
    )
    write(verdict(run, best, options))
    if options["apply"]:
        try:
            layout, done = job.apply(run, target=options["target"], load=options["load"])
        except job.ProfileError as exc:
            raise CommandError(str(exc)) from None
        command.done(f"Applied {layout.label}: {', '.join(done) or 'the pool already had it'}.")


def measure(options: dict, write) -> ProfileRun:
    try:
        if options["run"] is not None:
            run = ProfileRun.objects.get(pk=options["run"], state=ProfileRun.RUNNING)
        else:
            if options["layouts"] is not None and options["layouts"] < 1:
                raise CommandError("--layouts: at least 1")
            run = job.new_profile(
                budget_s=options["budget"],
                answer_tokens=options["answer_tokens"],
                prune=not options["no_prune"],
                layouts=options["layouts"],
                point_s=options["point_s"],
            )
    except ProfileRun.DoesNotExist:
        raise CommandError(f"no profile {options['run']} is waiting to run") from None
    except job.ProfileError as exc:
        raise CommandError(str(exc)) from None
    p = run.plan
    write(
        f"Profile {run.pk}: {len(p['layouts'])} layouts x {len(p['levels'])} points on {run.cores} cores"
        f"{' and a GPU' if run.gpu else ''}; each point {p['point_s']:g} s after {p['warm_s']:g} s of warm-up, "
        f"answers of {run.answer_tokens} tokens; at most {p['planned_s']} s of {run.budget_s:g}. "
        "Ctrl-C stops it and keeps what was measured."
    )
    # A SIGTERM (a service manager, `kill`) ends it as Ctrl-C does: servers stopped, results kept.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return measuring.execute(run, echo=write)
    except job.ProfileError as exc:
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        run.refresh_from_db()
        raise CommandError(
            f"profile {run.pk} interrupted: {len(run.points)} points kept, marked partial; "
            "no llama-server of it is left running. `pool profile --show` shows them."
        ) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def table(run: ProfileRun, *, typical_tokens: int) -> str:
    """Tokens/s and p50 TTFT per layout and level, and answers per minute at the typical length."""
    levels = run.plan.get("levels", list(planning.LEVELS))
    head = [
        "layout",
        *[f"tok/s @{n}" for n in levels],
        *[f"TTFT @{n}" for n in levels],
        f"answers/min ({typical_tokens} tok)",
        "status",
    ]
    cells = [head] + [
        [r["layout"].label, *r["speeds"], *r["ttfts"], r["per_minute"], r["status"]]
        for r in report.rows(run, typical_tokens=typical_tokens)
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    title = f"\nProfile {run.pk} ({run.state}{': ' + run.message if run.message else ''}) of {run.model_path or 'the model'}"
    return "\n".join([title, *lines, "TTFT in seconds, p50; '>' where most answers had no first token yet."])


def verdict(run: ProfileRun, best: planning.Layout | None, options: dict) -> str:
    what = (
        "most answers per minute"
        if options["target"] == planning.ANSWERS
        else f"the lowest TTFT at {options['load']} at once"
    )
    if best is None:
        return f"No measured layout qualifies for {what}."
    partial = " (from a partial profile)" if run.state != ProfileRun.DONE else ""
    hint = "" if options["apply"] else " `--apply` makes the pool that layout."
    return f"Best for {what}{partial}: {best.label}.{hint}"
