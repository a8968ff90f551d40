"""The one place a member's state changes.

Every change is a conditional update on the state the caller saw, so two writers (the
supervisor, a gateway's passive check) can never both win a race; the row count says who did.
Each change that lands becomes an event the dashboard sees.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from pool.models import Member, PoolEvent, states
from pool.services import events


def change_state(member: Member, new_state: str, *, reason: str = "", **fields: Any) -> bool:
    """Move `member` from the state it holds in memory to `new_state`. False if someone else
    changed it first (then `member` is left as it was). A same-state change with a reason
    (a crashed member restarting) is an event too."""
    old_state = member.state
    if not states.can_change(old_state, new_state):
        raise ValueError(
            f"{member.name}: no such move as {old_state} -> {new_state} (see states.TRANSITIONS)"
        )
    now = timezone.now()
    updates: dict[str, Any] = {"state": new_state, **fields}
    if new_state != old_state:
        updates["state_changed_at"] = now
    changed = Member.objects.filter(pk=member.pk, state=old_state).update(**updates)
    if not changed:
        return False
    for name, value in updates.items():
        setattr(member, name, value)
    if new_state != old_state or reason:
        message = f"{member.name}: {old_state} -> {new_state}" + (f" ({reason})" if reason else "")
        events.record(PoolEvent.STATE, message, member_name=member.name, state=new_state, old_state=old_state)
    return True


def update_observed(member: Member, **fields: Any) -> None:
    """Write observed fields that are not a state change (probe counters, log tail)."""
    Member.objects.filter(pk=member.pk).update(**fields)
    for name, value in fields.items():
        setattr(member, name, value)


def forget(member: Member) -> bool:
    """Delete a member the operator removed, once it has stopped (stopped -> gone). False if
    it is not stopped after all."""
    deleted, _ = Member.objects.filter(pk=member.pk, state__in=states.STOPPED_STATES).delete()
    if deleted:
        events.record(PoolEvent.STATE, f"{member.name}: removed", member_name=member.name, state="removed")
    return bool(deleted)
