"""The gateway's picture of the pool, held in memory and refreshed from the database.

The hot path reads only these dicts: no ORM, no thread hop. A background task reloads
them every VIBEADMIN_REFRESH_S in a worker thread, so an operator's change (a member
drained, a key revoked, the strategy switched) takes effect within a fraction of a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from pool import metrics
from pool.gateway.backend import Backend
from pool.gateway.fair import BATCH
from pool.gateway.prompts import PromptSettings
from pool.gateway.sampling import Sampling
from pool.gateway.strategies import Strategy, make_strategy
from pool.gateway.tutor import TutorSettings
from pool.gateway.types import Tenant
from pool.model_file import chosen_model
from pool.model_identity import identify
from pool.models import ApiKey, Member, Model, PoolSettings, Rollout
from pool.models import rollout_states as rs
from pool.models.library import PRIMARY_ALIAS
from pool.models.pool_settings import TASKS
from pool.services.usage import add_key_usage

log = logging.getLogger("pool.gateway")

MODEL_ALIAS = PRIMARY_ALIAS
# After a passive ejection, ignore the database's "ready" this long: the supervisor's
# write of "unhealthy" may still be on its way.
EJECT_HOLD_S = 5.0


@dataclass
class KeyInfo:
    """A platform key as the gateway enforces it; usage accumulates here until flushed."""

    id: int
    name: str
    rpm: int | None
    tpm: int | None
    max_parallel: int | None
    active: bool = True
    pending: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # requests, prompt, completion, errors
    weight: int = 1
    priority: str = "interactive"
    cache: bool = False  # the answer cache: opt-in per key
    cache_sampled: bool = False  # ... with temperature above 0 too
    tokens_per_day: int | None = None  # quotas, calendar day and month in TIME_ZONE
    tokens_per_month: int | None = None
    # Each student's own limits (students.py): none is no limit.
    user_rpm: int | None = None
    user_parallel: int | None = None
    user_tokens_per_day: int | None = None
    user_tokens_per_month: int | None = None
    samples: int = 1  # independent answers per math request unless it asks (voting.py)
    _tenant: Tenant | None = field(default=None, repr=False)

    @property
    def tenant(self) -> Tenant:
        """Whose service its requests count as (fair.py); made once, remade when changed."""
        if self._tenant is None:
            self._tenant = Tenant(f"key:{self.id}", self.name, self.weight, self.priority == BATCH)
        return self._tenant

    @classmethod
    def from_row(cls, key: ApiKey) -> KeyInfo:
        info = cls(key.pk, key.name, key.rpm, key.tpm, key.max_parallel)
        info.update(key)
        return info

    def update(self, key: ApiKey) -> None:
        self.rpm, self.tpm, self.max_parallel, self.active = key.rpm, key.tpm, key.max_parallel, key.is_active
        self.cache, self.cache_sampled = key.cache, key.cache_sampled
        self.tokens_per_day, self.tokens_per_month = key.tokens_per_day, key.tokens_per_month
        self.user_rpm, self.user_parallel = key.user_rpm, key.user_parallel
        self.user_tokens_per_day, self.user_tokens_per_month = (
            key.user_tokens_per_day,
            key.user_tokens_per_month,
        )
        self.samples = key.samples
        self.share(weight=key.weight, priority=key.priority)

    def share(self, *, weight: int, priority: str) -> None:
        if (weight, priority) != (self.weight, self.priority):
            self.weight, self.priority, self._tenant = weight, priority, None

    def count(self, prompt_tokens: int, completion_tokens: int, *, error: bool) -> None:
        """One request's usage, written to the database with the next flush."""
        pending = self.pending
        pending[0] += 1
        pending[1] += prompt_tokens
        pending[2] += completion_tokens
        pending[3] += error


@dataclass(frozen=True)
class ServedModel:
    """A library model as the gateway names and lists it."""

    name: str
    alias: str = ""
    sha256: str | None = None  # None until the supervisor has hashed it: the answer cache waits
    facts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Canary:
    """A share of the primary alias's traffic sent to another model (a rollout's canary)."""

    model: str
    percent: float
    tenant: str = ""  # "key:ID": only that key's requests; "": everyone's


@dataclass(frozen=True)
class PoolPolicy:
    strategy: str
    queue_size: int
    queue_timeout_s: float
    api_open: bool
    solve_rpm: int
    solve_inflight_per_address: int
    solve_max_tokens: int
    solve_pool_share: float
    prompts: PromptSettings
    tutor: TutorSettings
    model_id: str
    solve_tenant: Tenant = Tenant("solve", "solve")
    sampling: dict[str, Sampling] = field(default_factory=dict)  # task -> the operator's defaults
    solve_cache: bool = True
    solve_cache_sampled: bool = True
    solve_tokens_per_day: int | None = None
    solve_tokens_per_month: int | None = None
    max_samples: int = 8  # vibeadmin.samples, at most (voting.py)
    solve_samples: int = 1  # the solve page's default for math
    cache_epoch: int = 0  # raised by "Empty cache": every gateway drops its entries in memory
    model_sha256: str | None = None  # the primary model file's identity (None: not on this host)
    models: dict[str, ServedModel] = field(default_factory=dict)  # the library, by name
    canary: Canary | None = None
    alias_also: str = ""  # a model the alias reaches besides the primary, while a rollout moves members

    def accepts_model(self, name: str) -> bool:
        return self.resolve(name) is not None

    def resolve(self, name: str) -> str | None:
        """The library model a request's `model` names (its name or alias; the primary alias
        the primary model), or None."""
        if name in (self.model_id, MODEL_ALIAS):
            return self.model_id
        if name in self.models:
            return name
        return next((m.name for m in self.models.values() if m.alias and m.alias == name), None)

    def sha_of(self, name: str) -> str | None:
        """The answer cache's model identity; None (no caching) for the alias while it spans two models."""
        if name == MODEL_ALIAS:
            return None if self.alias_also else self.model_sha256
        served = self.models.get(name)
        return served.sha256 if served is not None else self.model_sha256


def _policy(
    row: PoolSettings,
    model_sha256: str | None = None,
    library: list[Model] | None = None,
    routes: RolloutRoutes | None = None,
) -> PoolPolicy:
    routes = routes or RolloutRoutes()
    primary = row.primary_model if row.primary_model_id else None
    return PoolPolicy(
        strategy=row.strategy,
        queue_size=row.queue_size,
        queue_timeout_s=row.queue_timeout_s,
        api_open=row.api_open,
        solve_rpm=row.solve_rpm,
        solve_inflight_per_address=row.solve_inflight_per_address,
        solve_max_tokens=row.solve_max_tokens,
        solve_pool_share=row.solve_pool_share,
        prompts=PromptSettings(
            {"general": row.prompt_general, "math": row.prompt_math, "code": row.prompt_code},
            row.language_hint,
            row.language_hint_enabled,
        ),
        tutor=TutorSettings(
            mode=row.solve_mode,
            max_turns=row.solve_max_turns,
            max_chars=row.solve_max_chars,
            system_prompt=row.prompt_tutor,
            first_hint=row.hint_first,
            steps={
                "another_hint": row.hint_another,
                "next_step": row.hint_next_step,
                "solution": row.hint_solution,
            },
        ),
        model_id=primary.name if primary is not None else chosen_model().model_id,
        solve_tenant=Tenant("solve", "solve", row.solve_weight, row.solve_priority == BATCH),
        sampling={task: Sampling(*row.sampling(task)) for task in TASKS},
        solve_cache=row.solve_cache,
        solve_cache_sampled=row.solve_cache_sampled,
        solve_tokens_per_day=row.solve_tokens_per_day,
        solve_tokens_per_month=row.solve_tokens_per_month,
        max_samples=row.max_samples,
        solve_samples=row.solve_samples,
        cache_epoch=row.cache_epoch,
        model_sha256=(primary.sha256 or None) if primary is not None else model_sha256,
        models={m.name: ServedModel(m.name, m.alias, m.sha256 or None, m.facts()) for m in library or []},
        canary=routes.canary,
        alias_also=routes.alias_also if routes.alias_also != (primary.name if primary else "") else "",
    )


@dataclass(frozen=True)
class RolloutRoutes:
    """How a rollout under way bends the routes: a canary's share of the primary alias, or,
    while members move from one model to the other, the alias reaching both."""

    canary: Canary | None = None
    alias_also: str = ""


def rollout_routes() -> RolloutRoutes:
    rollout = Rollout.objects.active().select_related("target").first()
    if rollout is None:
        return RolloutRoutes()
    if rollout.state == rs.CANARY:
        if not rollout.canary_percent:
            return RolloutRoutes()
        tenant = f"key:{rollout.canary_tenant_id}" if rollout.canary_tenant_id else ""
        return RolloutRoutes(canary=Canary(rollout.target.name, rollout.canary_percent, tenant))
    if rollout.state == rs.REPLACING or (rollout.state == rs.ROLLING_BACK and not rollout.canary_percent):
        # Old and new members both serve the alias while they replace each other: the pool's
        # capacity stays whole, and nothing is left without a member when the primary changes.
        return RolloutRoutes(alias_also=rollout.target.name)
    return RolloutRoutes()


class Registry:
    def __init__(self) -> None:
        self.backends: dict[int, Backend] = {}
        self.by_model: dict[str, list[Backend]] = {}  # the routable members of each library model
        self.keys: dict[str, KeyInfo] = {}  # sha256 of the key -> key
        self._policy: PoolPolicy | None = None
        self.strategy: Strategy = make_strategy("least_connections")
        self.ejected_until: dict[int, float] = {}
        self.listeners: list = []  # called after each refresh (the router wakes its queue)
        self.loaded = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def policy(self) -> PoolPolicy:
        """The pool's settings as last loaded; the gateway waits for `loaded` before using it."""
        if self._policy is None:
            raise RuntimeError("the gateway's pool policy was read before its first load from the database")
        return self._policy

    # --- loading ------------------------------------------------------------------------

    def load(self) -> tuple:
        """Runs in a worker thread."""
        close_old_connections()
        members = list(Member.objects.routable().select_related("model"))
        keys = list(ApiKey.objects.all())
        row = PoolSettings.load()
        # Before the library (no primary model): the configured file, hashed once, a stat() after that.
        sha = None if row.primary_model_id else identify(chosen_model())
        return members, keys, row, sha, list(Model.objects.all()), rollout_routes()

    def apply(
        self,
        members: list[Member],
        keys: list[ApiKey],
        row: PoolSettings,
        model_sha: str | None = None,
        library: list[Model] | None = None,
        routes: RolloutRoutes | None = None,
    ) -> None:
        now = time.monotonic()
        routes = routes or RolloutRoutes()
        policy = _policy(row, model_sha, library, routes)
        fresh: dict[int, Backend] = {}
        by_model: dict[str, list[Backend]] = {}
        for m in members:
            if self.ejected_until.get(m.pk, 0) > now or not m.base_url:
                continue
            backend = self.backends.get(m.pk) or Backend(m.pk, m.name, m.base_url)
            backend.name, backend.base_url, backend.api_key = m.name, m.base_url, m.api_key
            backend.weight, backend.max_inflight = m.weight, m.max_inflight
            backend.model = m.model.name if m.model_id else policy.model_id
            fresh[m.pk] = backend
            by_model.setdefault(backend.model, []).append(backend)
        # The primary alias's group: the primary's members, and a rolled-to model's meanwhile.
        by_model[MODEL_ALIAS] = by_model.get(policy.model_id, []) + by_model.get(policy.alias_also, [])
        self.backends, self.by_model = fresh, by_model
        for key in keys:
            info = self.keys.get(key.key_hash)
            if info is None:
                info = self.keys[key.key_hash] = KeyInfo.from_row(key)
            info.update(key)
        if self._policy is None or policy.strategy != self._policy.strategy:
            try:
                self.strategy = make_strategy(policy.strategy)
            except KeyError:
                log.error(
                    "unknown strategy %r in the pool settings; keeping %s",
                    policy.strategy,
                    type(self.strategy).__name__,
                )
        self._policy = policy
        self.loaded.set()
        for listener in self.listeners:
            listener()

    async def refresh(self) -> None:
        self.apply(*await sync_to_async(self.load, thread_sensitive=False)())

    async def run(self) -> None:
        last_flush = time.monotonic()
        while True:
            try:
                await self.refresh()
                if time.monotonic() - last_flush >= 2.0:
                    last_flush = time.monotonic()
                    await sync_to_async(self.flush_usage, thread_sensitive=False)()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be busy: keep the last good picture
                log.exception("could not refresh the pool from the database")
            await asyncio.sleep(settings.VIBEADMIN_REFRESH_S)

    def ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run())

    # --- used on the hot path -----------------------------------------------------------

    def routable(self, model: str = "") -> list[Backend]:
        """The members a request may go to: those serving `model`, or all ("")."""
        if model:
            return list(self.by_model.get(model, ()))
        return list(self.backends.values())

    def slots(self) -> int:
        """Requests the routable members take at once, all together."""
        return sum(b.max_inflight for b in self.backends.values())

    def eject(self, backend: Backend) -> bool:
        """Take a member out of rotation at once (passive health). True if it was in."""
        self.ejected_until[backend.id] = time.monotonic() + EJECT_HOLD_S
        for group in self.by_model.values():
            if backend in group:
                group.remove(backend)
        return self.backends.pop(backend.id, None) is not None

    # --- usage --------------------------------------------------------------------------

    def flush_usage(self) -> None:
        """Write accumulated per-key usage to the database (runs in a worker thread)."""
        for info in self.keys.values():
            requests, prompt, completion, errors = info.pending
            if not (requests or errors):
                continue
            info.pending = [0, 0, 0, 0]
            add_key_usage(info.id, requests=requests, prompt=prompt, completion=completion, errors=errors)

    def sample_load(self, queue_depth: int) -> None:
        metrics.record_load(
            queue_depth=queue_depth,
            inflight_by_member={b.name: b.inflight for b in self.backends.values()},
            slots_by_member={b.name: b.max_inflight for b in self.backends.values()},
        )
