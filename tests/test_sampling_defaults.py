"""The operator's sampling defaults per task (Routing page): a request that omits
temperature, top_p or max_tokens gets its task's default; a client's own value wins; a
default never passes the caps (VIBEADMIN_MAX_TOKENS, the solve page's longest answer); the
form refuses nonsense with an error on the form. The members are testing.fake_member
servers (small fake OpenAI servers) whose last request shows what the gateway sent."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from pool.gateway.app import SOLVE_PATH
from pool.models import PoolSettings
from tests.asgi_driver import request
from tests.gateway_kit import chat, set_policy
from tests.helpers import routing_data

MATH = {"vibeadmin": {"task": "math"}}


async def sent_for(
    gateway, fake, body: dict, *, key: str | None = None, path: str = "/v1/chat/completions"
) -> dict:
    response = await request(gateway, "POST", path, body, key=key)
    assert response.status == 200, response.body
    return fake.stats.last_request


def without(body: dict, *names: str) -> dict:
    return {k: v for k, v in body.items() if k not in names}


def test_the_defaults_start_from_vibethinkers_card(db):
    row = PoolSettings.load()
    assert [row.sampling(task) for task in ("general", "math", "code")] == [(0.6, 0.95, None)] * 3


@pytest.mark.asyncio
async def test_a_request_without_sampling_values_gets_its_tasks_defaults(
    gateway, fakes_in_loop, platform_key
):
    (fake,) = await fakes_in_loop(1)
    await sync_to_async(set_policy)(
        math_temperature=0.3, math_top_p=0.8, math_max_tokens=700, general_temperature=1.1
    )

    sent = await sent_for(gateway, fake, without(chat(**MATH), "max_tokens"), key=platform_key)
    general = await sent_for(gateway, fake, without(chat(), "max_tokens"), key=platform_key)

    assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.3, 0.8, 700)
    assert general["temperature"] == 1.1


@pytest.mark.asyncio
async def test_the_clients_own_values_win(gateway, fakes_in_loop, platform_key):
    (fake,) = await fakes_in_loop(1)
    await sync_to_async(set_policy)(math_temperature=0.3, math_top_p=0.8, math_max_tokens=700)

    sent = await sent_for(
        gateway, fake, chat(**MATH, temperature=0, top_p=1, max_tokens=12), key=platform_key
    )

    assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0, 1, 12)


@pytest.mark.asyncio
async def test_an_empty_max_tokens_default_is_the_settings_one(
    gateway, fakes_in_loop, platform_key, settings
):
    (fake,) = await fakes_in_loop(1)
    settings.VIBEADMIN_DEFAULT_MAX_TOKENS = 321

    sent = await sent_for(gateway, fake, without(chat(**MATH), "max_tokens"), key=platform_key)

    assert sent["max_tokens"] == 321


@pytest.mark.asyncio
async def test_a_default_never_passes_the_api_cap(gateway, fakes_in_loop, platform_key, settings):
    (fake,) = await fakes_in_loop(1)
    await sync_to_async(set_policy)(math_max_tokens=4000)
    settings.VIBEADMIN_MAX_TOKENS = 1000

    sent = await sent_for(gateway, fake, without(chat(**MATH), "max_tokens"), key=platform_key)
    refused = await request(
        gateway, "POST", "/v1/chat/completions", chat(**MATH, max_tokens=1001), key=platform_key
    )

    assert sent["max_tokens"] == 1000
    assert refused.status == 400 and refused.json()["error"]["param"] == "max_tokens"


@pytest.mark.asyncio
async def test_on_the_solve_page_the_default_stays_within_the_longest_answer(gateway, fakes_in_loop):
    (fake,) = await fakes_in_loop(1)
    await sync_to_async(set_policy)(math_max_tokens=4000, math_temperature=0.2, solve_max_tokens=300)

    sent = await sent_for(gateway, fake, {"problem": "What is 17 * 23?", "task": "math"}, path=SOLVE_PATH)
    chosen = await sent_for(
        gateway, fake, {"problem": "What is 17 * 23?", "task": "math", "max_tokens": 50}, path=SOLVE_PATH
    )

    assert (sent["max_tokens"], sent["temperature"]) == (300, 0.2)
    assert chosen["max_tokens"] == 50


def test_the_routing_page_saves_the_defaults_per_task(admin_client):
    changes = {"code_temperature": 0.2, "code_top_p": 0.9, "code_max_tokens": 1500, "math_max_tokens": ""}
    response = admin_client.post(reverse("routing"), routing_data(**changes))

    assert response.status_code == 302
    row = PoolSettings.load()
    assert row.sampling("code") == (0.2, 0.9, 1500)
    assert row.sampling("math") == (0.6, 0.95, None)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"math_temperature": 2.5}, "a temperature from 0 to 2"),
        ({"math_temperature": -1}, "a temperature from 0 to 2"),
        ({"code_top_p": 0}, "a top_p above 0 and at most 1"),
        ({"general_top_p": 1.5}, "a top_p above 0 and at most 1"),
        ({"math_max_tokens": 0}, "or empty"),
        ({"math_max_tokens": 100000}, "VIBEADMIN_MAX_TOKENS"),
        ({"math_temperature": "warm"}, "Enter a number."),
    ],
)
def test_nonsense_is_refused_on_the_form_and_nothing_saved(admin_client, changes, error):
    response = admin_client.post(reverse("routing"), routing_data(**changes))

    assert response.status_code == 200
    assert error in response.content.decode()
    assert PoolSettings.load().sampling("math") == (0.6, 0.95, None)
    assert PoolSettings.load().sampling("code") == (0.6, 0.95, None)


def test_the_solve_pages_default_answer_length_is_the_math_default(client, db):
    set_policy(math_max_tokens=700, solve_max_tokens=2048)

    response = client.get(reverse("solve"))

    assert response.context["default_budget"] == 700
    assert 700 in response.context["budgets"]
