"""The dashboard's one loop: its snapshot (snapshot.py) pushed to every open dashboard once
a second, on the web server's event loop. The channel layer is used only from this loop,
since the in-memory layer is not thread-safe."""

from __future__ import annotations

import asyncio

from channels.layers import get_channel_layer

from pool.dashboard import snapshot
from pool.loops.runtime import every, in_thread
from pool.services.events import DASHBOARD_GROUP

SNAPSHOT_EVERY_S = 1.0


async def push_snapshot() -> None:
    data = await in_thread(snapshot.build)()
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(DASHBOARD_GROUP, {"type": "dashboard.snapshot", "snapshot": data})


def start_background(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task]:
    """Schedule the push on `loop` (daphne's; it may not be running yet)."""
    return [loop.create_task(every(SNAPSHOT_EVERY_S, push_snapshot), name="dashboard-snapshot")]
