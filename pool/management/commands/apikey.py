"""`manage.py apikey create|list|set|revoke`: platforms' API keys. Only a hash is stored."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from pool import audit
from pool.apikeys import apikey_create, apikey_revoke, apikey_set_share
from pool.models import ApiKey
from pool.models.apikey import PRIORITIES


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
        share = sub.add_parser("set", help="Set a key's weight and class for fair sharing")
        share.add_argument("name")
        add_share_arguments(share, default=False)
        sub.add_parser("list", help="List keys with their limits and usage")
        revoke = sub.add_parser("revoke", help="Revoke a key at once")
        revoke.add_argument("name")

    def execute(self, *args, **options):
        with audit.acting_as(audit.CLI):  # every change made here is recorded as the command line's
            return super().execute(*args, **options)

    def handle(self, *args, action: str, **options):
        getattr(self, f"do_{action}")(**options)

    def do_create(self, *, name, rpm, tpm, max_parallel, weight, priority, **_):
        try:
            key, raw = apikey_create(
                name=name, rpm=rpm, tpm=tpm, max_parallel=max_parallel, weight=weight, priority=priority
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Created key {key.name!r}. It is shown only now; store it safely:\n{raw}")

    def do_set(self, *, name, weight, priority, **_):
        try:
            key = apikey_set_share(name=name, weight=weight, priority=priority)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{key.name!r} now has weight {key.weight}, {key.priority}; gateways use it within a second."
        )

    def do_list(self, **_):
        keys = ApiKey.objects.all()
        if not keys:
            self.stdout.write("No API keys yet. Create one: python manage.py apikey create PLATFORM")
            return
        self.stdout.write(
            f"{'name':20} {'key':12} {'status':8} {'rpm':>6} {'tpm':>8} {'par':>4} {'weight':>6} "
            f"{'class':11} {'requests':>9} {'prompt':>9} {'completion':>10} {'errors':>6}"
        )
        for k in keys:
            limits = [str(v) if v is not None else "-" for v in (k.rpm, k.tpm, k.max_parallel)]
            self.stdout.write(
                f"{k.name:20} {k.prefix + '…':12} {'active' if k.is_active else 'revoked':8} "
                f"{limits[0]:>6} {limits[1]:>8} {limits[2]:>4} {k.weight:>6} {k.priority:11} "
                f"{k.requests:>9} {k.prompt_tokens:>9} {k.completion_tokens:>10} {k.errors:>6}"
            )

    def do_revoke(self, *, name, **_):
        try:
            apikey_revoke(name=name)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Revoked {name!r}; requests with it are refused from now on.")
