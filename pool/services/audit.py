"""The operators' audit trail: who changed which desired state, from what to what, and when.

Every change goes through the service layer (pool/services/), which
saves through `save_row()`, `update_row()` or `delete_row()` here: they diff the row's fields before and after,
so a field added to a model later is audited with no more code. Who acts is set once where
a change enters: the dashboard's views (the signed-in user), the command line ("cli"), the
autoscaler; anything else is "system" (the first run, start-up).

Secrets never reach the trail: a field that holds a key, a hash, a token or a password shows
only whether it was set, and a URL shows its scheme and host (a webhook's path and query,
and any user:password, are credentials).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models
from prometheus_client.core import REGISTRY, CounterMetricFamily

from pool.models import PoolEvent

log = logging.getLogger("pool.audit")

USER, CLI, AUTOSCALER, ROLLOUT, SYSTEM = "user", "cli", "autoscaler", "rollout", "system"
# Kept by the database itself, not chosen by anyone: never audited.
NOT_DESIRED_STATE = {"id", "created_at", "updated_at", "last_used_at"}
SECRET_WORDS = ("key", "hash", "token", "secret", "password")
SET, UNSET = "(set)", "(none)"
CREATED, DELETED = "created", "deleted"  # the setting of a row's first and last events


@dataclass(frozen=True)
class Actor:
    kind: str  # USER, CLI, AUTOSCALER, ROLLOUT or SYSTEM
    name: str


NOBODY = Actor(SYSTEM, SYSTEM)  # the first run, start-up: no person or loop chose it
_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("actor", default=None)


@contextlib.contextmanager
def acting_as(kind: str, name: str = "") -> Iterator[Actor]:
    """Changes made inside are recorded as `kind` (a user's name, or the kind itself)."""
    actor = Actor(kind, name or kind)
    token = _actor.set(actor)
    try:
        yield actor
    finally:
        _actor.reset(token)


def current() -> Actor:
    return _actor.get() or NOBODY


def is_secret(field: models.Field) -> bool:
    """Keys, hashes, tokens, passwords: by name, so later fields are covered too. A count of
    tokens (max_tokens, tpm) is not a secret: only a name ending in a secret word is."""
    name = field.name.lower()
    return name.split("_")[-1] in SECRET_WORDS or "password" in name or "secret" in name


def shown(field: models.Field, value: Any) -> str:
    """A value as the trail shows it, masked where it could be a credential."""
    if value is None or value == "":
        return UNSET
    if is_secret(field):
        return SET
    if isinstance(field, models.URLField) or field.name.endswith("url"):
        parts = urlsplit(str(value))
        host = parts.hostname or ""
        port = f":{parts.port}" if _port(parts) else ""
        rest = "/…" if (parts.path.strip("/") or parts.query or parts.username) else ""
        return f"{parts.scheme}://{host}{port}{rest}" if parts.scheme else "(set)"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(field, models.ForeignKey):  # the row's name (a member's model), not its id
        related = field.related_model._default_manager.filter(pk=value).first()
        return str(related) if related is not None else f"#{value}"
    return str(value)


def _port(parts) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def desired_fields(model: type[models.Model], names: Iterable[str] | None = None) -> list[models.Field]:
    fields = [f for f in model._meta.concrete_fields if f.name not in NOT_DESIRED_STATE]
    if names is not None:
        wanted = set(names)
        fields = [f for f in fields if f.name in wanted or f.attname in wanted]
    return fields


def values(row: models.Model, fields: list[models.Field]) -> dict[str, Any]:
    return {f.name: getattr(row, f.attname) for f in fields}


def subject_of(row: models.Model) -> tuple[str, str]:
    """What changed, for the trail ("member m1", "key acme", "pool settings") and the member's name."""
    from pool.models import Member

    if isinstance(row, Member):
        return f"member {row.name}", row.name
    label = row._meta.verbose_name
    return (str(label) if str(row) == str(label) else f"{label} {row}"), ""


def record(row: models.Model, before: dict[str, Any], after: dict[str, Any], *, note: str = "") -> int:
    """One event per field whose value changed; returns how many."""
    subject, member_name = subject_of(row)
    fields = {f.name: f for f in desired_fields(type(row))}

    def event(setting: str, old: str, new: str, what: str) -> PoolEvent:
        return change_event(
            subject, setting, old, new, f"{what}" + (f" ({note})" if note else ""), member_name
        )

    if not before:  # a new row: one event, with what it was created with (defaults left out)
        made = ", ".join(
            f"{name} {shown(fields[name], value)}"
            for name, value in after.items()
            if name in fields and value != fields[name].get_default() and value not in (None, "")
        )
        PoolEvent.objects.bulk_create([event(CREATED, UNSET, made, f"created ({made})")])
        return 1
    changes = []
    for name, new in after.items():
        old = before.get(name)
        if old == new or name not in fields:
            continue
        old_shown, new_shown = shown(fields[name], old), shown(fields[name], new)
        if old_shown == new_shown == SET:
            old_shown, new_shown = SET, "(changed)"
        changes.append(
            event(name, old_shown, new_shown, f"{fields[name].verbose_name} {old_shown} → {new_shown}")
        )
    PoolEvent.objects.bulk_create(changes)
    return len(changes)


def save_row(row: models.Model, *, fields: Iterable[str] | None = None, note: str = "") -> models.Model:
    """Check the row against its model's rules (`full_clean`: field validators and `clean()`),
    save it, and record what changed. With `fields` (what a form or a command set), only
    those are written, checked and compared: counters another process updates meanwhile (a
    key's usage) are neither overwritten nor taken for a change. A new row records what it
    was created with, in one event. Raises ValidationError, nothing saved, where a rule fails."""
    model = type(row)
    stored = model._default_manager.filter(pk=row.pk).first() if row.pk is not None else None
    exists = stored is not None
    if not exists and row.pk is not None:  # a one-row table's defaults, saved at its first change
        stored = model(pk=row.pk)
    names = None if stored is None or fields is None else {f.name for f in desired_fields(model, fields)}
    compared = desired_fields(model, names)
    before = values(stored, compared) if stored is not None else {}
    row.full_clean(exclude=_unwritten(model, names))
    if names is None or not exists:
        row.save()
    else:
        stamped = [f.name for f in model._meta.concrete_fields if getattr(f, "auto_now", False)]
        row.save(update_fields=[*names, *stamped])
    record(row, before, values(row, compared), note=note)
    return row


def update_row(row: models.Model, *, note: str = "", **changes: Any) -> int:
    """Write only these fields (a queryset update: the supervisor's own writes to the same row
    are not overwritten), checked first by the model's rules (the changed fields' own and
    `clean()`), and record what changed. Returns the rows updated (0 or 1)."""
    model = type(row)
    fields = desired_fields(model, changes)
    stored = model._default_manager.filter(pk=row.pk).first()
    before = values(stored, fields) if stored is not None else {}
    kept = {name: getattr(row, name) for name in changes}
    for name, value in changes.items():
        setattr(row, name, value)
    try:
        row.full_clean(exclude=_unwritten(model, set(changes)))
    except ValidationError:
        for name, value in kept.items():
            setattr(row, name, value)
        raise
    updated = model._default_manager.filter(pk=row.pk).update(**changes)
    if updated:
        record(row, before, values(row, fields), note=note)
    return updated


def _unwritten(model: type[models.Model], written: set[str] | None) -> list[str] | None:
    """The fields a partial write leaves as they are: not checked again (an older row may
    hold a value a later rule refuses, and a stop must still go through)."""
    if written is None:
        return None
    return [f.name for f in model._meta.fields if f.name not in written and f.attname not in written]


def delete_row(row: models.Model, *, note: str = "") -> None:
    """Delete the row and record that it is gone, with what it held."""
    fields = desired_fields(type(row))
    held = values(row, fields)
    row.delete()
    subject, member_name = subject_of(row)
    shown_fields = {f.name: f for f in fields}
    was = ", ".join(
        f"{name} {shown(shown_fields[name], value)}"
        for name, value in held.items()
        if value not in (None, "")
    )
    what = "deleted" + (f" ({note})" if note else "")
    change_event(subject, DELETED, was, UNSET, what, member_name).save()


def change(subject: str, setting: str, old: str, new: str) -> None:
    """One change of something that is not a pool table's row (a user's role), as `record`
    writes it."""
    change_event(subject, setting, old, new, f"{setting} {old} → {new}").save()


def change_event(
    subject: str, setting: str, old: str, new: str, what: str, member_name: str = ""
) -> PoolEvent:
    """One change's event (unsaved), as the current actor's."""
    actor = current()
    return PoolEvent(
        kind=PoolEvent.CHANGE,
        member_name=member_name,
        subject=subject,
        setting=setting,
        old_value=old,
        new_value=new,
        actor=actor.name,
        actor_kind=actor.kind,
        message=f"{subject}: {what}",
    )


def denied(*, actor: str, role: str, attempt: str, needed: str) -> None:
    """A request the user's role may not make ("POST /dashboard/routing/"), kept beside the
    changes: who tried, as what, and the permission it needed."""
    log.warning("refused %s to %s (role %s, needs %s)", attempt, actor, role, needed)
    PoolEvent.objects.create(
        kind=PoolEvent.DENIED,
        subject=attempt[:200],
        setting="denied",
        old_value=role,
        new_value=needed,
        actor=actor,
        actor_kind=USER,
        message=f"refused {attempt} to {actor} ({role}; needs {needed})",
    )


class ChangesCollector:
    """`vibeadmin_desired_state_changes_total{actor_kind, setting}` for /metrics, counted in
    the database: the command line and other processes change state too, and each scrape
    sees all of it."""

    def describe(self):
        yield CounterMetricFamily(
            "vibeadmin_desired_state_changes", "Changes of desired state", labels=["actor_kind", "setting"]
        )

    def collect(self):
        family = CounterMetricFamily(
            "vibeadmin_desired_state_changes",
            "Changes of desired state by who made them (user, cli, autoscaler, system) and setting",
            labels=["actor_kind", "setting"],
        )
        try:
            rows = (
                PoolEvent.objects.filter(kind=PoolEvent.CHANGE)
                .values_list("actor_kind", "setting")
                .annotate(n=models.Count("id"))
                .order_by()
            )
            for kind, setting, n in rows:
                family.add_metric([kind, setting], n)
        except Exception:  # no database here (an async context, a scrape during migrate)
            log.warning("could not count the changes of desired state", exc_info=True)
        yield family


_collector = ChangesCollector()
with contextlib.suppress(ValueError):  # registered once per process
    REGISTRY.register(_collector)
