#!/usr/bin/env python
"""vibeadmin's command line: `python manage.py serve`, `pool ...`, `apikey ...`."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vibeadmin.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A bad setting is the operator's to fix: one line, no stack trace.
        sys.exit(f"vibeadmin: configuration error: {exc}")


if __name__ == "__main__":
    main()
