"""The control loops, on the web server's event loop: the pool's resources and member
states sampled once a second (for the charts, the alert rules and /metrics alike, whether
or not anyone has the dashboard open), the alert evaluator and the autoscaler. The
dashboard's own loop (its snapshot pushed over the websocket) is pool/dashboard/live.py.

Each loop runs one small step (its ORM work in a worker thread) and sleeps; a failed step
is logged and tried again, never the end of the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async

from pool import metrics
from pool.loops import alerts, autoscale, resources
from pool.models import Member, states

log = logging.getLogger("pool.loops.runtime")

SAMPLE_EVERY_S = 1.0
ALERTS_EVERY_S = 5.0
AUTOSCALE_EVERY_S = 5.0


def in_thread(step: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    # Not the thread Django's sync views share: a slow webhook must not hold up a page.
    return database_sync_to_async(step, thread_sensitive=False)


def sample_pool() -> None:
    members = list(Member.objects.all())
    resources.sample([(m.name, m.pid) for m in members if m.is_local and m.pid])
    metrics.export_member_states({m.name: m.state for m in members}, [state for state, _ in states.CHOICES])


async def sampling_step() -> None:
    await in_thread(sample_pool)()


async def evaluate_alerts() -> None:
    await in_thread(alerts.evaluate)()


async def autoscale_step() -> None:
    await in_thread(autoscale.step)()


async def every(interval_s: float, step: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:  # the database may be busy: try again next time
            log.exception("%s failed; trying again in %gs", step.__name__, interval_s)
        await asyncio.sleep(interval_s)


def start_background(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task]:
    """Schedule the loops on `loop` (daphne's; it may not be running yet)."""
    return [
        loop.create_task(every(SAMPLE_EVERY_S, sampling_step), name="pool-sampling"),
        loop.create_task(every(ALERTS_EVERY_S, evaluate_alerts), name="alerts"),
        loop.create_task(every(AUTOSCALE_EVERY_S, autoscale_step), name="autoscale"),
    ]
