"""`manage.py createuser NAME --role viewer|operator|admin`: a dashboard user in a role.

The password is generated and printed once (or read from stdin with --password-stdin, for
scripts); it is stored only as Django's hash. An existing user's role is changed instead."""

from __future__ import annotations

import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from pool.models import roles
from pool.services import audit
from pool.services.users import ROLE_NAMES, user_create, user_set_role


class Command(BaseCommand):
    help = "Create a dashboard user in a role (viewer, operator, admin), or change an existing user's role."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--role",
            required=True,
            choices=ROLE_NAMES,
            help="viewer: every page, no action; operator: also members, routing, alerts, "
            "autoscaling, rollouts, evals; admin: also API keys, users and roles; none: no access",
        )
        parser.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin, not generate one"
        )

    def execute(self, *args, **options):
        with audit.acting_as(audit.CLI):  # recorded as the command line's
            return super().execute(*args, **options)

    def handle(self, *args, name: str, role: str, password_stdin: bool, **options):
        existing = get_user_model().objects.filter(username=name.strip()).first()
        try:
            if existing is not None:
                user_set_role(user=existing, role=role)
                self.stdout.write(f"{existing.username!r} is now {roles.role_of(existing)}.")
                return
            password = sys.stdin.readline().rstrip("\n") if password_stdin else ""
            user, password = user_create(name=name, role=role, password=password)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if password_stdin:
            self.stdout.write(f"Created {user.username!r} as {role}.")
        else:
            self.stdout.write(
                f"Created {user.username!r} as {role}. The password is shown only now:\n{password}"
            )
