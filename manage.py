#!/usr/bin/env python
"""vibeadmin's command line: `python manage.py serve`, `pool ...`, `apikey ...`."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vibeadmin.settings")
    if sys.argv[1:2] == ["serve"]:
        # uvloop under daphne's Twisted reactor and the API's listener: the gateway's
        # throughput doubled with it (bench/). It must be the policy before Django loads its
        # apps, since daphne's app imports daphne.server, which creates the reactor's loop.
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A bad setting is the operator's to fix: one line, no stack trace.
        sys.exit(f"vibeadmin: configuration error: {exc}")


if __name__ == "__main__":
    main()
