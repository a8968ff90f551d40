"""Operator actions. Each only changes desired state; the supervisor does the work.

Shared by the CLI (`manage.py pool ...`), the dashboard and the autoscaler, so they all
validate the same way: a bad request raises ActionError with a message fit to show.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from django.conf import settings
from django.db import transaction

from pool import events
from pool.gateway.strategies import STRATEGIES
from pool.models import Member, PoolEvent, PoolSettings, states
from pool.models.member import MAX_WEIGHT, MIN_WEIGHT

# A member's name is a slug: it appears in URLs, log file names and metric labels.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class ActionError(ValueError):
    """The action can't be done; the message says why, for the operator."""


def validate_remote_url(url: str) -> str:
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ActionError(f"{url!r} is not a valid member URL: use http://HOST:PORT")
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ActionError(f"{url!r} has an invalid port") from None
    return url.strip().rstrip("/")


def _check_weight(weight: int) -> None:
    if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
        raise ActionError(f"weight must be between {MIN_WEIGHT} and {MAX_WEIGHT}")


def _check_gpu(gpu: int | None) -> None:
    if gpu is not None and gpu < 0:
        raise ActionError("GPU index must be 0 or more")


def _next_name() -> str:
    taken = set(Member.objects.values_list("name", flat=True))
    n = 1
    while f"m{n}" in taken:
        n += 1
    return f"m{n}"


def member_add(
    *, url: str = "", weight: int = 1, gpu: int | None = None, name: str = "", node: str = ""
) -> Member:
    _check_weight(weight)
    _check_gpu(gpu)
    if Member.objects.count() >= settings.VIBEADMIN_MAX_MEMBERS:
        raise ActionError(f"the pool already has {settings.VIBEADMIN_MAX_MEMBERS} members (VIBEADMIN_MAX_MEMBERS)")
    if name and not NAME_RE.match(name):
        raise ActionError(f"{name!r} is not a valid member name: use lowercase letters, digits, - and _")
    if name and Member.objects.filter(name=name).exists():
        raise ActionError(f"a member named {name!r} already exists")
    member = Member.objects.create(
        name=name or _next_name(),
        kind=states.REMOTE if url else states.LOCAL,
        url=validate_remote_url(url) if url else "",
        node=node or settings.VIBEADMIN_NODE,
        weight=weight,
        gpu=gpu,
        n_gpu_layers=settings.VIBEADMIN_N_GPU_LAYERS,
        n_ctx=settings.VIBEADMIN_N_CTX,
        n_threads=settings.VIBEADMIN_N_THREADS,
    )
    _note(member, f"{member.name}: added ({'remote ' + member.url if url else 'local'})")
    return member


def member_start(*, member: Member) -> None:
    # A failed member gets a fresh set of retries.
    Member.objects.filter(pk=member.pk).update(
        should_run=True, restart_requested=False, restarts=0, next_start_at=None
    )
    _note(member, f"{member.name}: start requested")


def member_drain(*, member: Member, timeout_s: float | None = None) -> None:
    """Stop taking new requests, let in-flight ones finish (up to the timeout), then stop."""
    timeout = settings.VIBEADMIN_DRAIN_TIMEOUT_S if timeout_s is None else timeout_s
    Member.objects.filter(pk=member.pk).update(should_run=False, drain_timeout_s=timeout)
    _note(member, f"{member.name}: drain requested (up to {timeout:g}s for in-flight requests)")


def member_stop(*, member: Member) -> None:
    """A drain with a short deadline: stop is graceful too, just less patient."""
    Member.objects.filter(pk=member.pk).update(should_run=False, drain_timeout_s=settings.VIBEADMIN_STOP_DRAIN_S)
    _note(member, f"{member.name}: stop requested")


def member_restart(*, member: Member) -> None:
    Member.objects.filter(pk=member.pk).update(
        should_run=True, restart_requested=True, restarts=0, drain_timeout_s=settings.VIBEADMIN_STOP_DRAIN_S
    )
    _note(member, f"{member.name}: restart requested")


def member_remove(*, member: Member) -> None:
    Member.objects.filter(pk=member.pk).update(remove_requested=True, should_run=False)
    _note(member, f"{member.name}: remove requested")


def member_set_weight(*, member: Member, weight: int) -> None:
    _check_weight(weight)
    Member.objects.filter(pk=member.pk).update(weight=weight)
    _note(member, f"{member.name}: weight set to {weight}")


def member_set_gpu(*, member: Member, gpu: int | None) -> None:
    """Pinning takes effect at the member's next start."""
    _check_gpu(gpu)
    Member.objects.filter(pk=member.pk).update(gpu=gpu)
    _note(member, f"{member.name}: GPU pin set to {'none' if gpu is None else gpu} (applies at next start)")


@transaction.atomic
def pool_scale(*, count: int, reason: str = "") -> list[str]:
    """Make `count` local members want to run: start stopped ones, add new ones, or drain
    the newest. Returns what it did, one line per member."""
    if count < 0:
        raise ActionError("scale to a number of members, 0 or more")
    if count > settings.VIBEADMIN_MAX_MEMBERS:
        raise ActionError(f"at most {settings.VIBEADMIN_MAX_MEMBERS} members (VIBEADMIN_MAX_MEMBERS)")
    local = Member.objects.filter(kind=states.LOCAL, remove_requested=False).order_by("id")
    running = [m for m in local if m.should_run]
    idle = [m for m in local if not m.should_run]
    done: list[str] = []
    while len(running) < count and idle:
        member = idle.pop(0)
        member_start(member=member)
        running.append(member)
        done.append(f"{member.name}: start")
    while len(running) < count:
        member = member_add()
        running.append(member)
        done.append(f"{member.name}: add")
    for member in reversed(running[count:]):
        member_drain(member=member)
        done.append(f"{member.name}: drain")
    if done:
        events.record(PoolEvent.SCALING if reason else PoolEvent.ACTION,
                      f"scale to {count}" + (f" ({reason})" if reason else "") + ": " + ", ".join(done))  # fmt: skip
    return done


def pool_set_strategy(*, name: str) -> None:
    if name not in STRATEGIES:
        raise ActionError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    pool_settings = PoolSettings.load()
    pool_settings.strategy = name
    pool_settings.save(update_fields=["strategy", "updated_at"])
    events.record(PoolEvent.ACTION, f"strategy set to {name}")


def _note(member: Member, message: str) -> None:
    events.record(PoolEvent.ACTION, message, member_name=member.name)
