"""The pool's members as operators change them: add, start, stop, drain, restart, remove,
reshape and scale. Each only changes desired state; the supervisor and the gateway do the
work. Each change is recorded with who made it and its old and new values (audit.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from pool.models import Member, Model, PoolEvent, PoolSettings, states
from pool.services import ActionError, audit, events, refused_as_action_error


def _next_name() -> str:
    taken = set(Member.objects.values_list("name", flat=True))
    n = 1
    while f"m{n}" in taken:
        n += 1
    return f"m{n}"


def member_add(
    *,
    url: str = "",
    weight: int = 1,
    gpu: int | None = None,
    name: str = "",
    node: str = "",
    engine: str = "",
    slots: int | None = None,
    api_key: str = "",
    model: Model | None = None,
) -> Member:
    """Add a local member (engine and slots default to VIBEADMIN_ENGINE and VIBEADMIN_SLOTS),
    or a remote one at `url` (its slots read from its /props unless given), serving `model`
    (default: the pool's primary model)."""
    # A remote server's engine shows when it is probed (a llama-server answers /props).
    engine = engine or (states.LLAMA_CPP_PYTHON if url else settings.VIBEADMIN_ENGINE)
    if not url and slots is None:
        slots = settings.VIBEADMIN_SLOTS if engine == states.LLAMA_SERVER else 1
    if api_key.strip() and not url:
        raise ActionError(
            "a local member's key is made by its supervisor at each start; only a remote one takes a key"
        )
    member = Member(
        name=name or _next_name(),
        kind=states.REMOTE if url else states.LOCAL,
        url=url.strip().rstrip("/"),
        node=node or settings.VIBEADMIN_NODE,
        weight=weight,
        engine=engine,
        slots=slots,
        max_inflight=slots or 1,
        api_key=api_key.strip(),
        gpu=gpu,
        n_gpu_layers=settings.VIBEADMIN_N_GPU_LAYERS,
        n_ctx=settings.VIBEADMIN_N_CTX,
        n_threads=settings.VIBEADMIN_N_THREADS,
        model=model or PoolSettings.load().primary_model,
    )
    with refused_as_action_error():
        audit.save_row(member)
    what = f"remote {member.url}" if url else f"local {engine}"
    if member.model_id:
        what += f", model {member.model}"
    _note(member, f"{member.name}: added ({what}, {slots or 'its own'} slots)")
    return member


def _update(member: Member, **changes) -> None:
    with refused_as_action_error():
        audit.update_row(member, **changes)


def member_start(*, member: Member) -> None:
    # A failed member gets a fresh set of retries.
    _update(member, should_run=True, restart_requested=False, restarts=0, next_start_at=None)
    _note(member, f"{member.name}: start requested")


def member_drain(*, member: Member, timeout_s: float | None = None) -> None:
    """Stop taking new requests, let in-flight ones finish (up to the timeout), then stop."""
    timeout = settings.VIBEADMIN_DRAIN_TIMEOUT_S if timeout_s is None else timeout_s
    _update(member, should_run=False, drain_timeout_s=timeout)
    _note(member, f"{member.name}: drain requested (up to {timeout:g}s for in-flight requests)")


def member_stop(*, member: Member) -> None:
    """A drain with a short deadline: stop is graceful too, just less patient."""
    _update(member, should_run=False, drain_timeout_s=settings.VIBEADMIN_STOP_DRAIN_S)
    _note(member, f"{member.name}: stop requested")


def member_restart(*, member: Member) -> None:
    _update(
        member,
        should_run=True,
        restart_requested=True,
        restarts=0,
        drain_timeout_s=settings.VIBEADMIN_STOP_DRAIN_S,
    )
    _note(member, f"{member.name}: restart requested")


def member_remove(*, member: Member) -> None:
    _update(member, remove_requested=True, should_run=False)
    _note(member, f"{member.name}: remove requested")


def member_set_weight(*, member: Member, weight: int) -> None:
    _update(member, weight=weight)
    _note(member, f"{member.name}: weight set to {weight}")


def member_set_slots(*, member: Member, slots: int | None) -> None:
    """A local member's slots take effect at its next start (restart it); a remote one's at
    once. None on a remote member: read them from its /props again."""
    if slots is None and member.is_local:
        raise ActionError("a local member needs a number of slots")
    fields: dict = {"slots": slots}
    if not member.is_local and slots is not None:
        fields["max_inflight"] = slots
    _update(member, **fields)
    when = " (applies at next start)" if member.is_local else ""
    _note(
        member, f"{member.name}: slots set to {slots if slots is not None else 'read from the member'}{when}"
    )


def member_set_engine(*, member: Member, engine: str) -> None:
    """A local member's engine changes at its next start."""
    if not member.is_local:
        raise ActionError("a remote member's engine is whatever its server runs: it is not set here")
    slots = member.slots if engine == states.LLAMA_SERVER else 1
    _update(member, engine=engine, slots=slots)
    _note(member, f"{member.name}: engine set to {engine} (applies at next start)")


def member_set_api_key(*, member: Member, api_key: str) -> None:
    """The key the gateway and the probes send a remote member ('' for none)."""
    if member.is_local:
        raise ActionError("a local member's key is made by its supervisor at each start")
    _update(member, api_key=api_key.strip())
    _note(member, f"{member.name}: API key {'set' if api_key.strip() else 'cleared'}")


def member_set_gpu(*, member: Member, gpu: int | None) -> None:
    """Pinning takes effect at the member's next start."""
    _update(member, gpu=gpu)
    _note(member, f"{member.name}: GPU pin set to {'none' if gpu is None else gpu} (applies at next start)")


def member_set_model(*, member: Member, model: Model) -> None:
    """A local member's library model changes at its next start (restart it); a rollout
    moves members without a gap (pool/services/rollout_machine.py)."""
    if not member.is_local:
        raise ActionError("a remote member serves whatever its server loaded: its model is not set here")
    _update(member, model=model)
    _note(member, f"{member.name}: model set to {model.name} (applies at next start)")


@transaction.atomic
def pool_scale(*, count: int, reason: str = "", model: Model | None = None) -> list[str]:
    """Make `count` local members (of `model`, where given) want to run: start stopped ones,
    add new ones, or drain the newest. Returns what it did, one line per member."""
    if count < 0:
        raise ActionError("scale to a number of members, 0 or more")
    if count > settings.VIBEADMIN_MAX_MEMBERS:
        raise ActionError(f"at most {settings.VIBEADMIN_MAX_MEMBERS} members (VIBEADMIN_MAX_MEMBERS)")
    local = Member.objects.filter(kind=states.LOCAL, remove_requested=False).order_by("id")
    if model is not None:
        local = local.filter(model=model)
    running = [m for m in local if m.should_run]
    idle = [m for m in local if not m.should_run]
    done: list[str] = []
    while len(running) < count and idle:
        member = idle.pop(0)
        member_start(member=member)
        running.append(member)
        done.append(f"{member.name}: start")
    while len(running) < count:
        member = member_add(model=model)
        running.append(member)
        done.append(f"{member.name}: add")
    for member in reversed(running[count:]):
        member_drain(member=member)
        done.append(f"{member.name}: drain")
    if done:
        events.record(
            PoolEvent.SCALING if reason else PoolEvent.ACTION,
            f"scale to {count}"
            + (f" of {model}" if model is not None else "")
            + (f" ({reason})" if reason else "")
            + ": "
            + ", ".join(done),
        )
    return done


def _check_shape(*, threads: int, slots: int) -> None:
    """A layout's shape, checked by Member's own field rules before any member changes."""
    sample, shape = Member(n_threads=threads, slots=slots), {"n_threads", "slots"}
    with refused_as_action_error():
        sample.clean_fields(exclude=[f.name for f in Member._meta.fields if f.name not in shape])


def _note(member: Member, message: str) -> None:
    events.record(PoolEvent.ACTION, message, member_name=member.name)


@transaction.atomic
def pool_apply_layout(
    *, members: int, threads: int, slots: int, gpu_layers: int | None = None, reason: str = ""
) -> list[str]:
    """Make the pool `members` local llama-server members of `threads` threads and `slots`
    slots each (and `gpu_layers` on a GPU host), as a profile found best: scale to the
    count, then set each wanted member's shape and restart the running ones that change."""
    _check_shape(threads=threads, slots=slots)
    done = pool_scale(count=members, reason=reason)
    wanted = Member.objects.filter(kind=states.LOCAL, remove_requested=False, should_run=True)
    for member in wanted:
        shape: dict = {"engine": states.LLAMA_SERVER, "slots": slots, "n_threads": threads}
        if gpu_layers is not None:
            shape["n_gpu_layers"] = gpu_layers
        if all(getattr(member, field) == value for field, value in shape.items()):
            continue
        _update(member, **shape, note=reason or "layout applied")
        if member.state in states.STOPPED_STATES:
            done.append(f"{member.name}: reshaped")
        else:
            member_restart(member=member)
            done.append(f"{member.name}: reshaped, restart")
    events.record(
        PoolEvent.ACTION,
        f"layout {members} x {threads} thread(s) x {slots} slots applied"
        + (f" ({reason})" if reason else "")
        + (": " + ", ".join(done) if done else ": nothing to change"),
    )
    return done
