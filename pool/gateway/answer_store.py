"""The answer cache's store: whole answers by key (pool/gateway/cache_key.py). Only answers
that ended by themselves (finish_reason "stop") are stored.

Where it lives: the database (CacheEntry), shared by every gateway, with an in-memory
front of the entries this gateway used lately. A lookup is a dict read; only a front miss
reads the table, in a worker thread (sync_to_async), so the event loop never waits on the
database. Writes are behind: a new answer is saved by a spawned thread task, and hits are
counted in memory and written with the periodic upkeep (`maintain`), which also applies
the TTL, the entries limit (least recently used first) and drops other models' entries.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from pool import metrics
from pool.gateway.replies import Answer
from pool.gateway.tasks import spawn
from pool.models import CacheEntry
from pool.services import cache

log = logging.getLogger("pool.gateway")

FRONT_MAX = 4096  # entries kept in memory in front of the table


@dataclass(slots=True)
class _Front:
    answer: Answer
    expires: float  # time.time()


class AnswerStore:
    def __init__(self) -> None:
        self.front: OrderedDict[str, _Front] = OrderedDict()
        self.epoch = 0
        self.touched: dict[str, int] = {}  # key -> hits not yet written
        self.failing = ""  # the last database error, for the dashboard; "" when all is well

    def sync_epoch(self, epoch: int) -> None:
        """ "Empty cache" on any gateway raises the epoch: drop what this one holds."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.front.clear()
            self.touched.clear()

    def peek(self, key: str, model_sha256: str) -> Answer | None:
        """The answer if this gateway holds it in memory: no await, so nothing can change
        between the look and what the caller does next."""
        held = self.front.get(key)
        if held is None:
            return None
        if held.expires > time.time() and held.answer.model_sha256 == model_sha256:
            self.front.move_to_end(key)
            self.touched[key] = self.touched.get(key, 0) + 1
            return held.answer
        del self.front[key]
        return None

    async def lookup(self, key: str, model_sha256: str) -> Answer | None:
        held = self.peek(key, model_sha256)
        if held is not None:
            return held
        try:
            found = await sync_to_async(_read, thread_sensitive=False)(key, model_sha256)
        except Exception as exc:  # the database away: a miss, said on the dashboard
            self.fail("read", exc)
            return None
        if found is None:
            return None
        answer, expires = found
        self.remember(key, answer, expires)
        self.touched[key] = self.touched.get(key, 0) + 1
        return answer

    def remember(self, key: str, answer: Answer, expires: float) -> None:
        self.front[key] = _Front(answer, expires)
        self.front.move_to_end(key)
        while len(self.front) > min(FRONT_MAX, settings.VIBEADMIN_CACHE_ENTRIES):
            self.front.popitem(last=False)

    def store(self, key: str, answer: Answer, tenant: str) -> None:
        """Keep a whole answer (the caller checked it ended by itself): in memory at once
        (before the generation is over for the requests waiting on it), in the table from a
        worker thread."""
        if settings.VIBEADMIN_CACHE_ENTRIES == 0:
            return
        self.remember(key, answer, time.time() + settings.VIBEADMIN_CACHE_TTL_S)
        spawn(self.write(key, answer, tenant))

    async def write(self, key: str, answer: Answer, tenant: str) -> None:
        try:
            await sync_to_async(_write, thread_sensitive=False)(key, answer, tenant)
        except Exception as exc:
            self.fail("write", exc)

    def fail(self, what: str, exc: Exception) -> None:
        self.failing = f"could not {what} the answer cache: {exc}"[:300]
        log.warning("answer cache: could not %s the database: %s", what, exc)

    def maintain(self) -> None:
        """The periodic upkeep, in a worker thread: hits written, expired and least recently
        used entries (beyond the limit) deleted."""
        touched, self.touched = self.touched, {}
        close_old_connections()
        now = timezone.now()
        cache.add_hits(touched, now)
        cache.drop_expired(now - timedelta(seconds=settings.VIBEADMIN_CACHE_TTL_S))
        cache.trim(settings.VIBEADMIN_CACHE_ENTRIES)
        metrics.CACHE_ENTRIES.set(CacheEntry.objects.count())
        self.failing = ""

    @staticmethod
    def forget_other_models(model_sha256s: Iterable[str]) -> int:
        """A model file changed or left the library: its answers go (a thread, at the change)."""
        close_old_connections()
        return cache.keep_only_models(model_sha256s)


def _read(key: str, model_sha256: str) -> tuple[Answer, float] | None:
    close_old_connections()
    row = CacheEntry.objects.filter(key=key).values_list("answer", "model_sha256", "created_at").first()
    if row is None:
        return None
    raw, sha, created = row
    expires = created.timestamp() + settings.VIBEADMIN_CACHE_TTL_S
    answer = Answer.from_json(raw, model_sha256) if sha == model_sha256 else None
    if answer is None or expires <= time.time():
        log.info("answer cache: entry %s is corrupt, expired or another model's; dropped", key[:12])
        cache.drop_entry(key)
        return None
    return answer, expires


def _write(key: str, answer: Answer, tenant: str) -> None:
    close_old_connections()
    now = timezone.now()
    fields = {
        "model_sha256": answer.model_sha256,
        "tenant": tenant,
        "answer": answer.to_json(),
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "generation_s": answer.generation_s,
        "created_at": now,
        "used_at": now,
    }
    cache.store_entry(key, fields)
