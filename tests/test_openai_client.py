"""The official `openai` package against vibeadmin started as an operator starts it:
`manage.py serve` in its own process, two fake llama.cpp members added with
`manage.py pool add --url`, a key from `manage.py apikey create`. The client is changed
in nothing but base_url and api_key (and max_retries=0, so its own retries hide no status).
Every test runs through both doors: the API's own port and /v1/ on the main (daphne) port.

serve runs with its supervisor, which probes the remote members and marks them ready;
VIBEADMIN_MEMBERS=0 keeps it from starting llama.cpp members of its own."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from pool.models.pool_settings import DEFAULT_PROMPTS
from testing.fake_member import FakeMemberProcess
from tests.helpers import answers, free_port, manage, start_serve, stop_serve, wait_until

MODEL_ID = "tiny-stand-in"  # the stand-in GGUF's file stem: what /v1/models names
MEMBERS = ("alpha", "beta")
QUESTION = [{"role": "user", "content": "What is 17 * 23?"}]


@dataclass
class Served:
    url: str  # the main port: daphne
    api_url: str  # the API's own port: pool/gateway/listener.py
    data_dir: Path
    env: dict[str, str]
    fakes: dict[str, FakeMemberProcess]
    key: str
    door: str = "api"

    def client(self, key: str | None = None) -> openai.OpenAI:
        base = self.api_url if self.door == "api" else self.url
        return openai.OpenAI(base_url=base + "/v1", api_key=key or self.key, max_retries=0)

    def manage(self, *args: str) -> str:
        result = manage(*args, data_dir=self.data_dir, **self.env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def states(self) -> dict[str, str]:
        with sqlite3.connect(self.data_dir / "db.sqlite3") as db:
            return dict(db.execute("SELECT name, state FROM pool_member"))


def created_key(stdout: str) -> str:
    return stdout.strip().splitlines()[-1]  # apikey create prints the key alone on its last line


@pytest.fixture(params=["api", "main"], ids=["API port", "main port"])
def served(request, served_once):
    served_once.door = request.param
    return served_once


@pytest.fixture(scope="module")
def served_once(migrated_template, tmp_path_factory):
    folder = tmp_path_factory.mktemp("openai-client")
    data_dir = folder / "data"
    shutil.copytree(migrated_template, data_dir)
    model = folder / f"{MODEL_ID}.gguf"
    model.write_bytes(b"GGUF" + bytes(28))  # passes the model check; no llama.cpp member reads it
    port, api_port = free_port(), free_port()
    env = {
        "VIBEADMIN_PORT": str(port),
        "VIBEADMIN_API_PORT": str(api_port),
        "VIBEADMIN_MEMBERS": "0",
        "VIBEADMIN_MODEL": str(model),
        "VIBEADMIN_TICK_S": "0.1",
        "VIBEADMIN_PROBE_INTERVAL_S": "0.2",
        "VIBEADMIN_HEALTHY_AFTER": "1",
        "VIBEADMIN_REFRESH_S": "0.1",
        "VIBEADMIN_STOP_DRAIN_S": "1",
    }
    fakes: dict[str, FakeMemberProcess] = {}
    child = None
    try:
        for name in MEMBERS:
            fakes[name] = FakeMemberProcess(name=name, ttft=0.0, tpt=0.0).start()
        app = Served(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{api_port}", data_dir, env, fakes, key="")
        for name, fake in fakes.items():
            app.manage("pool", "add", "--url", fake.url, "--name", name)
        app.key = created_key(app.manage("apikey", "create", "algebra-school"))
        child = start_serve(data_dir, log=folder / "serve.out", **env)
        openapis = (app.url + "/v1/openapi.json", app.api_url + "/v1/openapi.json")
        wait_until(
            lambda: (
                child.poll() is not None
                or (all(map(answers, openapis)) and set(app.states().values()) == {"ready"})
            ),
            60,
            interval=0.2,
            what="serve to answer with both members ready",
        )
        assert child.poll() is None, (folder / "serve.out").read_text()
        yield app
    finally:
        if child is not None:
            stop_serve(child, data_dir)
        for fake in fakes.values():
            fake.stop()


def test_a_chat_completion_comes_back_as_the_clients_own_types(served):
    reply = served.client().chat.completions.create(model="vibethinker", messages=QUESTION, max_tokens=4)

    assert isinstance(reply, openai.types.chat.ChatCompletion)
    assert reply.choices[0].message.content == "tok0 tok1 tok2 tok3"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 4


def test_a_streamed_chat_completion_arrives_delta_by_delta(served):
    stream = served.client().chat.completions.create(
        model="vibethinker", messages=QUESTION, max_tokens=5, stream=True
    )

    chunks = list(stream)

    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert deltas == ["tok0", " tok1", " tok2", " tok3", " tok4"]
    assert chunks[-1].choices[0].finish_reason == "length"


def test_a_text_completion_works_with_the_served_models_own_name(served):
    reply = served.client().completions.create(model=MODEL_ID, prompt="2 + 2 =", max_tokens=3)

    assert reply.choices[0].text == "tok0 tok1 tok2"


def test_the_model_list_names_the_served_model_and_its_alias(served):
    assert [m.id for m in served.client().models.list()] == [MODEL_ID, "vibethinker"]


def test_every_response_names_the_member_that_served_it(served):
    served_before = {name: fake.stats()["served"] for name, fake in served.fakes.items()}

    raw = served.client().chat.completions.with_raw_response.create(
        model="vibethinker", messages=QUESTION, max_tokens=2
    )

    member = raw.headers["x-vibeadmin-member"]
    served_now = {name: fake.stats()["served"] - served_before[name] for name, fake in served.fakes.items()}
    assert served_now == {name: int(name == member) for name in MEMBERS}
    assert raw.parse().choices[0].message.content == "tok0 tok1"


def test_the_task_sent_through_extra_body_picks_the_operators_system_prompt(served):
    raw = served.client().chat.completions.with_raw_response.create(
        model="vibethinker", messages=QUESTION, max_tokens=2, extra_body={"vibeadmin": {"task": "code"}}
    )

    forwarded = served.fakes[raw.headers["x-vibeadmin-member"]].stats()["last_request"]
    assert forwarded["messages"][0] == {"role": "system", "content": DEFAULT_PROMPTS["code"]}
    assert "vibeadmin" not in forwarded


def test_a_wrong_key_raises_authentication_error(served):
    with pytest.raises(openai.AuthenticationError) as caught:
        served.client(key="sk-not-a-key").chat.completions.create(model="vibethinker", messages=QUESTION)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


def test_an_unknown_model_raises_not_found_error(served):
    with pytest.raises(openai.NotFoundError) as caught:
        served.client().chat.completions.create(model="gpt-4o", messages=QUESTION)
    assert caught.value.code == "model_not_found"


def test_a_key_over_its_requests_per_minute_raises_rate_limit_error(served):
    client = served.client(
        key=created_key(served.manage("apikey", "create", f"one-a-minute-{served.door}", "--rpm", "1"))
    )
    client.chat.completions.create(model="vibethinker", messages=QUESTION, max_tokens=1)

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="vibethinker", messages=QUESTION, max_tokens=1)
    assert caught.value.code == "rate_limit_requests"
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_a_student_named_with_user_has_the_limits_per_student_and_reads_its_usage(served):
    name = f"school-{served.door}"
    client = served.client(key=created_key(served.manage("apikey", "create", name, "--user-rpm", "1")))
    client.chat.completions.create(model="vibethinker", messages=QUESTION, max_tokens=1, user="student-4711")

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="vibethinker", messages=QUESTION, max_tokens=1, user="student-4711"
        )
    assert caught.value.code == "user_rate_limited"
    assert int(caught.value.response.headers["retry-after"]) >= 1
    client.chat.completions.create(model="vibethinker", messages=QUESTION, max_tokens=1, user="student-42")
    usage = client.get("/usage", cast_to=object, options={"params": {"user": "student-4711"}})
    assert usage["user"] == "student-4711" and usage["today"]["requests"] == 1  # type: ignore[index]


def status_of(client: openai.OpenAI) -> int:
    try:
        client.chat.completions.create(model="vibethinker", messages=QUESTION, max_tokens=1)
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


def test_a_pool_with_no_ready_member_raises_internal_server_error_with_503(served):
    client = served.client()
    for name in MEMBERS:
        served.manage("pool", "stop", name)
    try:
        wait_until(lambda: status_of(client) == 503, 10, interval=0.1, what="the gateway to see no member")
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="vibethinker", messages=QUESTION, max_tokens=1)
        assert caught.value.status_code == 503
        assert caught.value.code == "no_ready_member"
    finally:
        for name in MEMBERS:
            served.manage("pool", "start", name)
        wait_until(lambda: set(served.states().values()) == {"ready"}, 30, what="both members ready again")
