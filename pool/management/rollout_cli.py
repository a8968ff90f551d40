"""`manage.py pool rollout`: move the pool to another library model, one member at a time;
with a canary first, gated by the accuracy check where asked. The supervisor does the work
(pool/services/rollout_machine.py); this only asks, and with --wait follows it.

Exit codes with --wait: 0 every member serves the new model, 3 rolled back (or aborted),
1 an error."""

from __future__ import annotations

import argparse
import json
import time

from django.core.management.base import CommandError

from pool.models import ApiKey, Rollout
from pool.models import rollout_states as rs
from pool.services.library import model_named
from pool.services.rollouts import PROMOTE, active_rollout, rollout_abort, rollout_decide, rollout_start

ROLLED_BACK_EXIT = 3


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "rollout", help="move the primary model's members to another model, one at a time (--canary, --gate)"
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="the library model to roll out")
    parser.add_argument("--wait", action="store_true", help="follow it; exit 0 done, 3 rolled back, 1 error")
    parser.add_argument(
        "--canary",
        type=float,
        default=0.0,
        metavar="PERCENT",
        help="a canary first, with this share of traffic",
    )
    parser.add_argument(
        "--gate", action="store_true", help="the accuracy check promotes or rolls back the canary"
    )
    parser.add_argument(
        "--tenant", default="", metavar="KEYNAME", help="the canary takes only this key's requests"
    )
    parser.add_argument("--status", action="store_true", help="the rollout under way, or the last one")
    parser.add_argument("--json", action="store_true", help="with --status: JSON, for scripts")
    parser.add_argument("--abort", action="store_true", help="back to where it started")
    parser.add_argument("--promote", action="store_true", help="promote an ungated canary: roll the rest")
    parser.add_argument("--gate-run", type=int, default=None, help=argparse.SUPPRESS)


def handle(options: dict, say) -> None:
    if options["gate_run"] is not None:
        from pool.eval.gate import gate_run

        gate_run(options["gate_run"], say)
        return
    if options["status"]:
        show(say, as_json=options["json"])
        return
    if options["abort"] or options["promote"]:
        rollout = active_rollout()
        if options["abort"]:
            rollout_abort(rollout=rollout)
            say(f"Rollout {rollout.pk}: abort requested; the members go back to {rollout.source.name}.")
        else:
            rollout_decide(rollout=rollout, verdict=PROMOTE, why="the operator promoted it")
            say(f"Rollout {rollout.pk}: promoted; the rest of the members follow.")
        return
    if not options["name"]:
        raise CommandError("name the model to roll out (`pool model list`), or use --status or --abort")
    tenant = None
    if options["tenant"]:
        tenant = ApiKey.objects.filter(name=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no API key named {options['tenant']!r}")
    rollout = rollout_start(
        target=model_named(options["name"]),
        canary_percent=options["canary"],
        gate=options["gate"],
        tenant=tenant,
    )
    say(
        f"Rollout {rollout.pk}: {rollout.source.name} -> {rollout.target.name}, {rollout.members_total} member(s)."
    )
    if options["wait"]:
        wait(rollout, say)


def wait(rollout: Rollout, say) -> None:
    """Follow it until it ends, one line per change; the exit code says how it ended."""
    last = ""
    while True:
        rollout.refresh_from_db()
        line = f"{rollout.state}: {rollout.reason}"
        if line != last:
            say(line)
            last = line
        if rollout.state == rs.DONE:
            return
        if rollout.state in (rs.ROLLED_BACK, rs.ABORTED):
            raise CommandError(f"rolled back: {rollout.reason}", returncode=ROLLED_BACK_EXIT)
        if rollout.state == rs.FAILED:
            raise CommandError(f"the rollout failed: {rollout.reason}")
        time.sleep(1.0)


def show(say, *, as_json: bool) -> None:
    rollout = Rollout.objects.select_related("source", "target", "canary_tenant").first()
    if rollout is None:
        say("{}" if as_json else "No rollout yet.")
        return
    facts = rollout.facts()
    if as_json:
        say(json.dumps(facts, indent=2))
        return
    say(f"Rollout {rollout.pk}: {facts['source']} -> {facts['target']}: {facts['state']}")
    say(f"  {facts['replaced']} of {facts['members_total']} replaced; {facts['reason']}")
    if rollout.canary_percent:
        tenant = f" of {facts['canary_tenant']}'s traffic" if facts["canary_tenant"] else ""
        say(f"  canary: {rollout.canary_percent:g}%{tenant}" + (", gated" if rollout.gate else ""))
    if rollout.gate:
        say(
            f"  gate: canary {rollout.canary_passed}/{rollout.canary_asked} right, "
            f"baseline {rollout.baseline_passed}/{rollout.baseline_asked}; verdict {facts['verdict'] or 'pending'}"
        )
