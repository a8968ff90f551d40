"""Where pool happenings go: a PoolEvent row, the dashboard's channel group, and any
in-process listener (the serve command prints start-up progress from here)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from pool.models import PoolEvent
from pool.services import audit

log = logging.getLogger("pool.events")
DASHBOARD_GROUP = "dashboard"

Listener = Callable[[dict[str, Any]], None]
_listeners: list[Listener] = []
# The web server's event loop. The in-memory channel layer is not thread-safe, so sends
# from the supervisor thread are handed to that loop rather than run on a loop of their own.
_web_loop: asyncio.AbstractEventLoop | None = None


def bind_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    global _web_loop
    _web_loop = loop


def listen(listener: Listener) -> None:
    _listeners.append(listener)


def record(kind: str, message: str, *, member_name: str = "", **data: Any) -> None:
    """Keep an event and tell everyone who watches. A failing listener or channel layer is
    logged, not raised (events are not control flow); a failing database write does raise."""
    actor = audit.current()
    PoolEvent.objects.create(
        kind=kind, member_name=member_name, message=message, actor=actor.name, actor_kind=actor.kind
    )
    event = {"kind": kind, "member": member_name, "message": message, **data}
    log.debug(message)
    for listener in list(_listeners):
        try:
            listener(event)
        except Exception:  # a broken listener must not stop the supervisor
            log.exception("event listener failed")
    broadcast({"type": "pool.event", "event": event})


def broadcast(message: dict[str, Any], group: str = DASHBOARD_GROUP) -> None:
    """Send to the dashboard group (or another) from sync code (the supervisor thread, views)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        if _web_loop is not None and _web_loop.is_running():
            asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _web_loop)
        else:
            async_to_sync(layer.group_send)(group, message)
    except Exception:
        log.warning("could not publish to the dashboard group", exc_info=True)
