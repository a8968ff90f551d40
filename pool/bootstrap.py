"""Start-up: the database checked, and on the first run an admin account, the first members,
the default alert rules."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import transaction

from pool.model_file import ModelChoice
from pool.models import Member, PoolSettings, states
from pool.private_files import write_private
from pool.services import ActionError, accounts, alert_rules
from pool.services.library import library_ensure_configured
from pool.services.members import member_add
from pool.services.pool_settings import claim_first_run

ADMIN_USERNAME = "admin"


def check_migrated() -> None:
    """A new database (a new VIBEADMIN_DATA_DIR or DATABASE_URL) is one line, not a traceback."""
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor
    from django.db.utils import OperationalError

    try:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except OperationalError as exc:
        raise CommandError(f"cannot reach the database: {exc}; check DATABASE_URL") from None
    if pending:
        raise CommandError(
            f"the database has {len(pending)} migration(s) to apply: run `python manage.py migrate` first "
            "(`make run` does both)"
        )


def admin_password_file():
    return settings.DATA_DIR / "admin-password.txt"


def ensure_admin(say: Callable[[str], None], login_url: str) -> None:
    """Create the admin account once and tell where to log in; the password is also kept
    in a file only its owner can read, since it is shown only in this terminal."""
    User = get_user_model()
    path = admin_password_file()
    if User.objects.filter(is_superuser=True).exists():
        where = f" (password in {path})" if path.exists() else ""
        say(f"Dashboard: {login_url}{where}")
        return
    password = secrets.token_urlsafe(12)
    if not accounts.create_first_admin(ADMIN_USERNAME, password):
        say(f"Dashboard: {login_url}")
        return
    path.unlink(missing_ok=True)  # left from an earlier database
    write_private(path, password + "\n")
    say(f"Created the admin account. Log in at {login_url} as {ADMIN_USERNAME!r} with password {password}")
    say(f"(the password is also kept in {path}, readable only by you)")


def register_model(say: Callable[[str], None], choice: ModelChoice) -> None:
    """The configured model (VIBEADMIN_MODEL, or the packaged stand-in) in the library, the
    pool's primary model where it has none yet; a file that cannot be served is one line."""
    try:
        model = library_ensure_configured(choice, warn=say)
    except ActionError as exc:
        raise CommandError(str(exc)) from None
    primary = PoolSettings.load().primary_model
    if primary is not None and primary.pk != model.pk:
        say(
            f"Model library: {model.name} registered; the primary model stays {primary.name} "
            f"(`manage.py pool rollout {model.name}` moves the pool to it)"
        )


@transaction.atomic
def first_run(say: Callable[[str], None], *, with_members: bool) -> None:
    """On the very first run only: the default alert rules and, where this process
    supervises, VIBEADMIN_MEMBERS local members. An operator who later removes them all
    does not get them back on the next start; a gateway-only process (`serve
    --no-supervisor`) creates no members, since node supervisors run them."""
    if not claim_first_run():
        return
    if with_members:
        for _ in range(settings.VIBEADMIN_MEMBERS):
            member_add()
        say(f"First run: created {settings.VIBEADMIN_MEMBERS} local members (VIBEADMIN_MEMBERS)")
    rules = alert_rules.ensure_default_rules()
    say(f"First run: created {rules} default alert rules (change them on the dashboard's Alerts page)")


class StartupProgress:
    """Prints member state changes, and once every wanted member is ready, says so."""

    def __init__(self, say, *, url: str = "", node: str | None = None):
        self.say = say
        self.url = url
        self.node = node  # a node supervisor speaks only of its own members
        self.announced = False

    def __call__(self, event: dict) -> None:
        if event.get("kind") != "state":
            return
        self.say(f"  {event['message']}")
        wanted = Member.objects.filter(should_run=True, remove_requested=False)
        if self.node:
            wanted = wanted.filter(node=self.node)
        ready = wanted.filter(state=states.READY).count()
        if not self.announced and wanted.exists() and ready == wanted.count():
            self.announced = True
            where = f"on node {self.node}" if self.node else f"at {self.url}"
            self.say(f"vibeadmin is ready: {ready} member{'s' if ready != 1 else ''} ready {where}")
