"""The service layer: every write to the database goes through a module here.

Desired state (what an operator wants: members, the pool's settings, keys, alert rules,
jobs) changes only through these functions, each checked by its model's rules and
recorded in the audit trail with who acted (`audit.acting_as`). Shared by the command
line, the dashboard and the autoscaler, so they all validate the same way: a bad request
raises ActionError (or the model's ValidationError) with a message fit to show.
"""


class ActionError(ValueError):
    """The action can't be done; the message says why, for the operator."""
