"""The pool-wide settings (one PoolSettings row) as the command line and the Routing page
change them: checked by PoolSettings' own rules, saved and recorded through audit."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from pool.models import PoolEvent, PoolSettings
from pool.models.pool_settings import STRATEGIES
from pool.services import ActionError, audit, events


def pool_set_strategy(*, name: str) -> None:
    if name not in STRATEGIES:
        raise ActionError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    pool_settings = PoolSettings.load()
    pool_settings.strategy = name
    audit.save_row(pool_settings, fields=["strategy"])
    events.record(PoolEvent.ACTION, f"strategy set to {name}")


# Kept by the pool itself, never set by an operator's command.
NOT_CONFIGURABLE = {"first_run_done", "cache_epoch", "primary_model"}


def pool_settings_fields() -> list[models.Field]:
    """The pool-wide settings an operator may change from the command line (`pool config`)."""
    return [f for f in audit.desired_fields(PoolSettings) if f.name not in NOT_CONFIGURABLE]


def pool_configure(changes: dict[str, str]) -> PoolSettings:
    """Set pool-wide settings from text (`NAME=VALUE`, as typed at the command line): each
    value converted by its field, all of them checked together by PoolSettings' own rules
    (the Routing page's), and saved and recorded as one change. Nothing is saved if any fails."""
    fields = {f.name: f for f in pool_settings_fields()}
    row = PoolSettings.load()
    for name, text in changes.items():
        field = fields.get(name)
        if field is None:
            raise ActionError(f"no setting {name!r}; `manage.py pool config` lists them")
        blank = text.strip() == ""
        if blank and not field.null:
            raise ActionError(f"{name} cannot be empty")
        try:
            value = None if blank else field.to_python(text.strip())
        except ValidationError as exc:
            raise ActionError(f"{name}: {' '.join(exc.messages)}") from None
        if field.name == "strategy" and value not in STRATEGIES:
            raise ActionError(f"unknown strategy {value!r}; choose one of {', '.join(STRATEGIES)}")
        setattr(row, field.attname, value)
    try:
        audit.save_row(row, fields=list(changes))
    except ValidationError as exc:
        raise ActionError("; ".join(_messages(exc))) from None
    return row


def _messages(exc: ValidationError) -> list[str]:
    if hasattr(exc, "error_dict"):
        return [f"{name}: {' '.join(messages)}" for name, messages in exc.message_dict.items()]
    return list(exc.messages)


def stored() -> PoolSettings:
    """The row itself, made with the defaults if nobody has saved it yet."""
    row, _ = PoolSettings.objects.get_or_create(pk=1)
    return row


def claim_first_run() -> bool:
    """True for exactly one process, the first to start: a conditional update, so that of two
    starting at once only one creates the first members and rules."""
    stored()
    return bool(PoolSettings.objects.filter(pk=1, first_run_done=False).update(first_run_done=True))
