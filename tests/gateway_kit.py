"""Fixtures for gateway tests: a fresh Gateway per test, fake members registered as
ready remote members, and a platform key. Loaded through conftest's pytest_plugins.

The members here are testing.fake_member processes (small fake OpenAI servers): exact and
fast for routing, retries and queueing. Tests against real llama.cpp members say so.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import pytest_asyncio

from pool import inflight
from pool.models import Member, PoolSettings, states
from pool.services.keys import apikey_create
from testing.fake_member import FakeMemberProcess
from tests.asgi_driver import Call


@pytest.fixture
def gateway_settings(settings):
    settings.VIBEADMIN_REFRESH_S = 0.05
    settings.VIBEADMIN_UNHEALTHY_AFTER = 2
    settings.VIBEADMIN_CONNECT_TIMEOUT_S = 1.0
    return settings


@pytest_asyncio.fixture
async def gateway(gateway_settings, transactional_db):
    """A Gateway of its own (not the module's singleton), with in-flight counts reset."""
    from pool.gateway import upstream
    from pool.gateway.app import Gateway

    inflight._counts.clear()
    gw = Gateway()
    yield gw
    for task in (gw.registry._task, gw._sampler):
        if task is not None:
            task.cancel()
    await upstream.close()
    inflight._counts.clear()


@pytest.fixture
def fake_members(transactional_db):
    """`fake_members(n, **options)` starts n fake members and registers them as ready
    remote members named a, b, c...; all are stopped after the test."""
    started: list[FakeMemberProcess] = []

    def make(n: int = 1, **options) -> list[FakeMemberProcess]:
        made = []
        for _ in range(n):
            name = "abcdefghijklmnop"[len(started)]
            fake = FakeMemberProcess(name=name, **options).start()
            started.append(fake)
            Member.objects.create(name=name, kind=states.REMOTE, url=fake.url, state=states.READY)
            made.append(fake)
        return made

    yield make
    for fake in started:
        fake.stop()


@pytest.fixture
def model_file(settings, tmp_path):
    """A model file of its own, so its sha256 is known (the answer cache keys on it) and can change."""
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + b"weights" * 100)
    settings.VIBEADMIN_MODEL = str(path)
    return path


@pytest.fixture
def platform_key(transactional_db) -> str:
    """The raw key of a platform with no limits."""
    _, raw = apikey_create(name="algebra-school")
    return raw


def set_policy(**fields) -> None:
    PoolSettings.objects.get_or_create(pk=1)
    PoolSettings.objects.filter(pk=1).update(**fields)


def chat(content: str = "What is 17 * 23?", **extra) -> dict:
    return {
        "model": "vibethinker",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 8,
        **extra,
    }


def chat_call(gateway, key: str, content: str = "hi", **extra) -> Call:
    """A chat completion with `key`, started on the gateway at once (Call)."""
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    return Call(gateway, "POST", "/v1/chat/completions", json.dumps(chat(content, **extra)).encode(), headers)


async def wait_for_queue(gateway, depth: int) -> None:
    for _ in range(200):
        if len(gateway.router.queue) == depth:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the queue never reached {depth} (it holds {len(gateway.router.queue)})")


@pytest_asyncio.fixture
async def fakes_in_loop(transactional_db):
    """`await fakes_in_loop(n, **options)`: like `fake_members`, but served on the test's own
    event loop instead of in processes: cheap where a test needs several members and sends
    one request at a time. Returns the FakeMember objects (their `stats` are plain data)."""
    from asgiref.sync import sync_to_async

    from testing.fake_member import FakeConfig, FakeMember, start

    runners = []

    async def make(n: int = 1, **options) -> list[FakeMember]:
        made = []
        for _ in range(n):
            name = "abcdefghijklmnop"[len(runners)]
            config = FakeConfig(name=name)
            config.update(options)
            member = FakeMember(config)
            runner, url = await start(member)
            runners.append(runner)
            await sync_to_async(Member.objects.create)(
                name=name, kind=states.REMOTE, url=url, state=states.READY
            )
            made.append(member)
        return made

    yield make
    for runner in runners:
        await runner.cleanup()
