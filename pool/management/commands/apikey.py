"""`manage.py apikey create|list|set|revoke`: platforms' API keys. Only a hash is stored."""

from __future__ import annotations

import argparse

from django.core.management.base import BaseCommand, CommandError

from pool.models import ApiKey
from pool.models.apikey import PRIORITIES
from pool.services import audit
from pool.services.keys import STUDENT_LIMITS, UNSET, apikey_create, apikey_revoke, apikey_set

ALIASES = {"update": "set"}


def add_share_arguments(parser, default: bool) -> None:
    """Fair sharing: a key's weight and class when the pool is full."""
    parser.add_argument(
        "--weight",
        type=int,
        default=1 if default else None,
        help="its share of a full pool against other keys' weights (default 1)",
    )
    parser.add_argument(
        "--priority",
        choices=[p for p, _ in PRIORITIES],
        default="interactive" if default else None,
        help="batch: only slots no interactive request waits for (default interactive)",
    )


def add_cache_and_quota_arguments(parser, default: bool) -> None:
    """The answer cache (opt-in) and token quotas per calendar day and month (TIME_ZONE)."""
    parser.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=False if default else None,
        help="answer repeated requests from the answer cache (default off)",
    )
    parser.add_argument(
        "--cache-sampled",
        action=argparse.BooleanOptionalAction,
        default=False if default else None,
        help="serve stored answers with temperature above 0 too (a stored answer is one sample)",
    )
    quota = int if default else _quota
    unset = None if default else UNSET
    parser.add_argument(
        "--tokens-per-day",
        type=quota,
        default=unset,
        help="token quota per calendar day" + ("" if default else "; none removes it"),
    )
    parser.add_argument(
        "--tokens-per-month",
        type=quota,
        default=unset,
        help="token quota per calendar month" + ("" if default else "; none removes it"),
    )


def add_student_arguments(parser, default: bool) -> None:
    """Each student's own limits within the key (a student is named by the request's `user`)."""
    kind = int if default else _quota
    unset = None if default else UNSET
    removes = "" if default else "; none removes it"
    for flag, what in (
        ("--user-rpm", "requests per minute per student"),
        ("--user-parallel", "requests in flight per student"),
        ("--user-tokens-per-day", "token quota per student per calendar day"),
        ("--user-tokens-per-month", "token quota per student per calendar month"),
    ):
        parser.add_argument(flag, type=kind, default=unset, help=what + removes)


def _quota(value: str) -> int | None:
    if value.lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number of tokens, or none; got {value!r}") from None


class Command(BaseCommand):
    help = "Create, list, set (weight and class) and revoke the API keys platforms use on /v1/."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a key and print it once")
        create.add_argument("name")
        create.add_argument("--rpm", type=int, help="requests per minute")
        create.add_argument("--tpm", type=int, help="tokens per minute")
        create.add_argument("--max-parallel", type=int, help="requests in flight at once")
        add_share_arguments(create, default=True)
        add_cache_and_quota_arguments(create, default=True)
        add_student_arguments(create, default=True)
        share = sub.add_parser(
            "set",
            aliases=["update"],
            help="Set a key's weight and class, its cache, its quotas and its limits per student",
        )
        share.add_argument("name")
        add_share_arguments(share, default=False)
        add_cache_and_quota_arguments(share, default=False)
        add_student_arguments(share, default=False)
        sub.add_parser("list", help="List keys with their limits and usage")
        revoke = sub.add_parser("revoke", help="Revoke a key at once")
        revoke.add_argument("name")

    def execute(self, *args, **options):
        with audit.acting_as(audit.CLI):  # every change made here is recorded as the command line's
            return super().execute(*args, **options)

    def handle(self, *args, action: str, **options):
        getattr(self, f"do_{ALIASES.get(action, action)}")(**options)

    def do_create(self, *, name, rpm, tpm, max_parallel, weight, priority, **options):
        try:
            key, raw = apikey_create(
                name=name,
                rpm=rpm,
                tpm=tpm,
                max_parallel=max_parallel,
                weight=weight,
                priority=priority,
                cache=options["cache"],
                cache_sampled=options["cache_sampled"],
                tokens_per_day=options["tokens_per_day"],
                tokens_per_month=options["tokens_per_month"],
                **{name: options[name] for name in STUDENT_LIMITS},
            )
        except ValueError as exc:
            raise refused(exc) from None
        self.stdout.write(f"Created key {key.name!r}. It is shown only now; store it safely:\n{raw}")

    def do_set(self, *, name, weight, priority, **options):
        try:
            key = apikey_set(
                name=name,
                weight=weight,
                priority=priority,
                cache=options["cache"],
                cache_sampled=options["cache_sampled"],
                tokens_per_day=options["tokens_per_day"],
                tokens_per_month=options["tokens_per_month"],
                **{name: options[name] for name in STUDENT_LIMITS},
            )
        except ValueError as exc:
            raise refused(exc) from None
        self.stdout.write(
            f"{key.name!r} now has weight {key.weight}, {key.priority}, cache {describe_cache(key)}, "
            f"quotas {describe_quotas(key)}, per student {describe_students(key)}; gateways use it within "
            "a second."
        )

    def do_list(self, **_):
        keys = ApiKey.objects.all()
        if not keys:
            self.stdout.write("No API keys yet. Create one: python manage.py apikey create PLATFORM")
            return
        self.stdout.write(
            f"{'name':20} {'key':12} {'status':8} {'rpm':>6} {'tpm':>8} {'par':>4} {'weight':>6} "
            f"{'class':11} {'requests':>9} {'prompt':>9} {'completion':>10} {'errors':>6} {'cache':8} quotas; "
            "per student"
        )
        for k in keys:
            limits = [str(v) if v is not None else "-" for v in (k.rpm, k.tpm, k.max_parallel)]
            self.stdout.write(
                f"{k.name:20} {k.prefix + '…':12} {'active' if k.is_active else 'revoked':8} "
                f"{limits[0]:>6} {limits[1]:>8} {limits[2]:>4} {k.weight:>6} {k.priority:11} "
                f"{k.requests:>9} {k.prompt_tokens:>9} {k.completion_tokens:>10} {k.errors:>6} "
                f"{describe_cache(k):8} {describe_quotas(k)}; {describe_students(k)}"
            )

    def do_revoke(self, *, name, **_):
        try:
            apikey_revoke(name=name)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Revoked {name!r}; requests with it are refused from now on.")


def refused(exc: ValueError) -> CommandError:
    """The key's rules' messages, each named by its option (`--tokens-per-day cannot be ...`)."""
    fields = getattr(exc, "fields", {})
    if not fields:
        return CommandError(str(exc))
    named = [
        f"{'' if name == '__all__' else '--' + name.replace('_', '-') + ' '}{m}"
        for name, ms in fields.items()
        for m in ms
    ]
    return CommandError("; ".join(named))


def describe_cache(key: ApiKey) -> str:
    return "sampled" if key.cache and key.cache_sampled else ("on" if key.cache else "off")


def describe_quotas(key: ApiKey) -> str:
    parts = [
        f"{n}/{period}"
        for n, period in ((key.tokens_per_day, "day"), (key.tokens_per_month, "month"))
        if n is not None
    ]
    return ", ".join(parts) or "none"


def describe_students(key: ApiKey) -> str:
    parts = [
        f"{n} {what}"
        for n, what in (
            (key.user_rpm, "rpm"),
            (key.user_parallel, "parallel"),
            (key.user_tokens_per_day, "tokens/day"),
            (key.user_tokens_per_month, "tokens/month"),
        )
        if n is not None
    ]
    return ", ".join(parts) or "no limits"
