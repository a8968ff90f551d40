"""`manage.py pool ...`: the operator's command line for the pool.

Every subcommand only changes desired state, through pool/services/ (the same checks as the
dashboard); the running supervisor does the work. `pool status` reads the database, so it
works from any shell on any host that shares it.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pool.eval import cli as eval_cli
from pool.management import library_cli, rollout_cli
from pool.models import Member, Node, PoolSettings, states
from pool.models.member import MAX_WEIGHT, MIN_WEIGHT
from pool.models.pool_settings import STRATEGIES
from pool.profiling import cli as profile_cli
from pool.services import ActionError, audit
from pool.services.leak_rates import record_leak_rates
from pool.services.library import model_named
from pool.services.members import (
    member_add,
    member_drain,
    member_remove,
    member_restart,
    member_set_api_key,
    member_set_engine,
    member_set_slots,
    member_set_weight,
    member_start,
    member_stop,
    pool_scale,
)
from pool.services.pool_settings import pool_configure, pool_set_strategy, pool_settings_fields

MEMBER_ACTIONS = {
    "start": (member_start, "start a member (a failed one gets fresh retries)"),
    "stop": (member_stop, "stop a member gracefully: drain briefly, then SIGTERM, then SIGKILL"),
    "drain": (member_drain, "take no new requests, let in-flight ones finish, then stop"),
    "restart": (member_restart, "stop a member, then start it again"),
    "remove": (member_remove, "stop a member and delete it from the pool"),
}
COLUMNS = (
    "NAME",
    "KIND",
    "ENGINE",
    "MODEL",
    "WANT",
    "STATE",
    "PID",
    "ADDRESS",
    "SLOTS",
    "WEIGHT",
    "GPU",
    "RESTARTS",
    "LAST ERROR",
)
LAST_ERROR_WIDTH = 60


class Command(BaseCommand):
    help = "Show and change the pool: status, add, set, start, stop, drain, restart, remove, scale, strategy, config, model, rollout, eval, profile."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        status = sub.add_parser("status", help="list the members and their states")
        status.add_argument("--json", action="store_true", help="print a JSON list, for scripts")
        add = sub.add_parser("add", help="add a local member, or a remote one with --url")
        add.add_argument(
            "--url", default="", help="base URL of an already running server, e.g. http://gpu2:8080"
        )
        add.add_argument(
            "--weight",
            type=int,
            default=1,
            help=f"share of traffic for weighted strategies ({MIN_WEIGHT}-{MAX_WEIGHT})",
        )
        add.add_argument("--gpu", type=int, default=None, help="pin a local member to this GPU index")
        add.add_argument("--name", default="", help="a name of your choosing (default m1, m2, ...)")
        add.add_argument("--node", default="", help="the node whose supervisor runs it (default: this one)")
        add.add_argument(
            "--engine",
            default="",
            choices=["", *states.ENGINES],
            help="what a local member runs (default VIBEADMIN_ENGINE)",
        )
        add.add_argument(
            "--slots",
            type=int,
            default=None,
            help="answers it decodes at once (llama-server; default VIBEADMIN_SLOTS, "
            "or a remote's own from its /props)",
        )
        add.add_argument("--api-key", default="", help="the key a remote member's server wants")
        add.add_argument("--model", default="", help="the library model it serves (default: the primary)")
        change = sub.add_parser("set", help="change a member's slots, weight, engine or (remote) API key")
        change.add_argument("name", metavar="NAME")
        change.add_argument(
            "--slots",
            default=None,
            help="answers it decodes at once (local: at next start); 'auto' on a remote: from its /props",
        )
        change.add_argument(
            "--weight", type=int, default=None, help="share of traffic for weighted strategies"
        )
        change.add_argument(
            "--engine", default=None, choices=states.ENGINES, help="a local member's engine (at next start)"
        )
        change.add_argument("--api-key", default=None, help="a remote member's key ('' clears it)")
        for name, (_, help_text) in MEMBER_ACTIONS.items():
            sub.add_parser(name, help=help_text).add_argument("name", metavar="NAME")
        scale = sub.add_parser("scale", help="make N local members want to run (adds or drains members)")
        scale.add_argument("count", type=int, metavar="N")
        scale.add_argument("--model", default="", help="count (and add) only members of this library model")
        strategy = sub.add_parser("strategy", help="show the routing strategy, or set it")
        strategy.add_argument("name", nargs="?", metavar="NAME")
        config = sub.add_parser(
            "config", help="show the pool-wide settings (the Routing page's), or set some: NAME=VALUE ..."
        )
        config.add_argument("assignments", nargs="*", metavar="NAME=VALUE")
        library_cli.add_parser(sub)
        rollout_cli.add_parser(sub)
        eval_cli.add_parser(sub)
        leaks = sub.add_parser("leak-rates", help="store `bench.leak_rate` results for the Quality page")
        leaks.add_argument("files", nargs="+", metavar="FILE", help="bench/results/leak_rate*.json")
        profile_cli.add_arguments(
            sub.add_parser("profile", help="measure layouts on this host's model and cores; --apply the best")
        )

    def execute(self, *args, **options):
        with audit.acting_as(audit.CLI):  # every change made here is recorded as the command line's
            return super().execute(*args, **options)

    def handle(self, *args, action: str, **options):
        try:
            if action == "status":
                self.status(as_json=options["json"])
            elif action == "add":
                self.add(
                    url=options["url"],
                    weight=options["weight"],
                    gpu=options["gpu"],
                    name=options["name"],
                    node=options["node"],
                    engine=options["engine"],
                    slots=options["slots"],
                    api_key=options["api_key"],
                    model=options["model"],
                )
            elif action == "set":
                self.change(
                    options["name"],
                    slots=options["slots"],
                    weight=options["weight"],
                    engine=options["engine"],
                    api_key=options["api_key"],
                )
            elif action in MEMBER_ACTIONS:
                self.member_action(action, options["name"])
            elif action == "scale":
                self.scale(options["count"], model=options["model"])
            elif action == "strategy":
                self.strategy(options["name"])
            elif action == "config":
                self.config(options["assignments"])
            elif action == "leak-rates":
                self.leak_rates(options["files"])
            elif action == "model":
                library_cli.handle(options, self.stdout.write)
            elif action == "rollout":
                rollout_cli.handle(options, self.stdout.write)
            elif action == "eval":
                take_ctrl_c()
                eval_cli.handle(options, self.stdout.write)
            elif action == "profile":
                take_ctrl_c()
                profile_cli.handle(self, options)
        except ActionError as exc:
            raise CommandError(str(exc)) from None

    # --- subcommands --------------------------------------------------------------------

    def status(self, *, as_json: bool) -> None:
        members = list(Member.objects.all())
        lost = Node.objects.lost_names()
        facts = [m.facts(node_lost=m.node in lost) for m in members]
        if as_json:
            self.stdout.write(json.dumps(facts, indent=2))
            return
        if not members:
            self.stdout.write("The pool has no members. Add one with `manage.py pool add`.")
        else:
            self.stdout.write(format_table([COLUMNS, *[member_row(f) for f in facts]]))
        self.stdout.write(f"\nStrategy: {current_strategy()}")
        self.stdout.write(supervisor_line())

    def add(
        self,
        *,
        url: str,
        weight: int,
        gpu: int | None,
        name: str,
        node: str = "",
        engine: str = "",
        slots: int | None = None,
        api_key: str = "",
        model: str = "",
    ) -> None:
        member = member_add(
            url=url,
            weight=weight,
            gpu=gpu,
            name=name,
            node=node,
            engine=engine,
            slots=slots,
            api_key=api_key,
            model=model_named(model) if model else None,
        )
        if url:
            slots_text = f"{member.slots} slots" if member.slots else "slots read from its /props"
            where = f"remote member at {member.url} ({slots_text})"
        else:
            where = f"local {member.engine} member with {member.slots} slot{'s' if member.slots != 1 else ''} on node {member.node}"
        if member.model_id:
            where += f", serving {member.model}"
        self.done(f"Added {member.name}, a {where}.")

    def change(
        self, name: str, *, slots: str | None, weight: int | None, engine: str | None, api_key: str | None
    ) -> None:
        member = find_member(name)
        if not any(value is not None for value in (slots, weight, engine, api_key)):
            raise CommandError("say what to set: --slots, --weight, --engine or --api-key")
        done = []
        if engine is not None:
            member_set_engine(member=member, engine=engine)
            member.refresh_from_db()
            done.append(f"engine {engine}")
        if slots is not None:
            member_set_slots(member=member, slots=parse_slots(slots))
            done.append(f"slots {slots}")
        if weight is not None:
            member_set_weight(member=member, weight=weight)
            done.append(f"weight {weight}")
        if api_key is not None:
            member_set_api_key(member=member, api_key=api_key)
            done.append("API key " + ("set" if api_key else "cleared"))
        later = " (slots and engine of a local member apply at its next start: `pool restart NAME`)"
        self.done(f"{name}: {', '.join(done)}." + (later if member.is_local and (slots or engine) else ""))

    def member_action(self, action: str, name: str) -> None:
        function, _ = MEMBER_ACTIONS[action]
        function(member=find_member(name))
        self.done(f"{name}: {action} requested.")

    def scale(self, count: int, *, model: str = "") -> None:
        done = pool_scale(count=count, model=model_named(model) if model else None)
        if not done:
            self.stdout.write(
                f"Nothing to do: {count} local member{'s' if count != 1 else ''} already want to run."
            )
            return
        self.done("\n".join(done))

    def strategy(self, name: str | None) -> None:
        if name:
            pool_set_strategy(name=name)
            self.stdout.write(f"Strategy set to {name}.")
            return
        current = current_strategy()
        for known in STRATEGIES:
            self.stdout.write(f"{'*' if known == current else ' '} {known}")

    def leak_rates(self, files: list[str]) -> None:
        for name in files:
            try:
                rows = record_leak_rates(json.loads(Path(name).read_text()))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise CommandError(f"{name}: not a bench.leak_rate result ({exc})") from None
            shown = ", ".join(f"{r.mode} {r.leaks} of {r.problems} at {r.max_tokens} tokens" for r in rows)
            self.stdout.write(f"{name}: {shown}")

    def config(self, assignments: list[str]) -> None:
        if not assignments:
            row = PoolSettings.load()
            for field in pool_settings_fields():
                value = getattr(row, field.attname)
                shown = "" if value is None else str(value).replace("\n", "\\n")  # one line a setting
                self.stdout.write(f"{field.name}={shown if len(shown) <= 70 else shown[:67] + '...'}")
            return
        changes = {}
        for assignment in assignments:
            name, sep, value = assignment.partition("=")
            if not sep:
                raise CommandError(
                    f"{assignment!r}: write NAME=VALUE (an empty VALUE clears an optional setting)"
                )
            changes[name.strip()] = value
        pool_configure(changes)
        self.stdout.write("Set " + ", ".join(f"{name}={value}" for name, value in changes.items()) + ".")

    def done(self, message: str) -> None:
        self.stdout.write(message)
        if not supervisor_alive():
            self.stdout.write(
                "Note: no supervisor is running; `manage.py serve` will carry this out when it starts."
            )


# --- helpers ------------------------------------------------------------------------------


def parse_slots(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise CommandError(f"--slots takes a number (or 'auto' for a remote member), got {text!r}") from None


def find_member(name: str) -> Member:
    try:
        return Member.objects.get(name=name)
    except Member.DoesNotExist:
        known = list(Member.objects.values_list("name", flat=True))
        if not known:
            raise CommandError(f"no member named {name!r}: the pool has no members") from None
        raise CommandError(f"no member named {name!r}; known members: {', '.join(known)}") from None


def member_row(facts: dict) -> tuple[str, ...]:
    error = facts["last_error"].splitlines()[0] if facts["last_error"] else ""
    if len(error) > LAST_ERROR_WIDTH:
        error = error[: LAST_ERROR_WIDTH - 1] + "…"
    return (
        facts["name"],
        facts["kind"],
        facts["engine"],
        facts["model"] or "-",
        facts["wants"],
        facts["state"],
        str(facts["pid"] or "-"),
        facts["address"] or "-",
        str(facts["slots"]),
        str(facts["weight"]),
        "-" if facts["gpu"] is None else str(facts["gpu"]),
        str(facts["restarts"]),
        error,
    )


def format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def take_ctrl_c() -> None:
    """Ctrl-C stops a long command (eval, profile), which keeps what it measured, whatever
    it inherited: a shell's background job (`make test &`, nohup) starts it with SIGINT
    ignored, and then Ctrl-C or a SIGINT from a script would do nothing."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def current_strategy() -> str:
    # Read without creating the settings row: `pool status` only reads.
    stored = PoolSettings.objects.filter(pk=1).values_list("strategy", flat=True).first()
    return stored or PoolSettings._meta.get_field("strategy").get_default()


def supervisor_alive() -> bool:
    node = Node.objects.filter(name=settings.VIBEADMIN_NODE).first()
    return node is not None and not node.is_lost()


def supervisor_line() -> str:
    lines = [
        f"Supervisor of node {node.name}: running (pid {node.pid})"
        if not node.is_lost()
        else f"Supervisor of node {node.name}: LOST (not seen for {settings.VIBEADMIN_NODE_LOST_AFTER_S:g}s); "
        f"its members are unreachable until `manage.py serve` or `supervise --node {node.name}` runs there"
        for node in Node.objects.all()
    ]
    return "\n".join(lines) or "Supervisor: none has run yet; start one with `manage.py serve`"
