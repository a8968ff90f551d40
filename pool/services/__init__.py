"""The service layer: every write to the database goes through a module here.

Desired state (what an operator wants: members, the pool's settings, keys, alert rules,
jobs) changes only through these functions, each checked by its model's rules
(`full_clean`) and recorded in the audit trail with who acted (`audit.acting_as`). Shared
by the command line, the dashboard and the autoscaler, so they all validate the same way:
a refused change raises ActionError with a message fit to show, nothing saved.

Observed state (a member's state, probe counters, usage, cache entries, a job's progress,
alert rules firing) is written here too, each table by one module, unaudited: nobody chose
it, and what matters of it is an event (events.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.core.exceptions import ValidationError


class ActionError(ValueError):
    """The action can't be done; the message says why, for the operator. `fields` holds the
    model's messages per field, for a form to show each beside its field."""

    def __init__(self, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}


@contextlib.contextmanager
def refused_as_action_error() -> Iterator[None]:
    """A model's ValidationError as an ActionError: one line, and the messages per field."""
    try:
        yield
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            fields = exc.message_dict
            raise ActionError("; ".join(m for ms in fields.values() for m in ms), fields) from None
        raise ActionError("; ".join(exc.messages)) from None
