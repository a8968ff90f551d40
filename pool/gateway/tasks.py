"""Fire-and-forget work on the gateway's event loop (a database write, a Redis release)
that a request must not wait for. The set keeps a reference until the task ends, since
the loop holds only weak ones."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

_running: set[asyncio.Task] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(coro)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


def stopping() -> bool:
    """Whether the current task has been asked to stop. A loop that runs until cancelled
    checks this as well as the exception: redis-py can swallow a CancelledError that lands
    mid-command (its own read timeout takes it for one of its own), and a heartbeat that
    lives on then keeps the event loop from ever closing."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
