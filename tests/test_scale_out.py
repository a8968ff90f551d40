"""Beyond one machine: two gateway processes and two node supervisors sharing real
PostgreSQL and Redis servers (started by the test on free ports). The members are
testing.fake_member processes (small fake OpenAI servers, one generation at a time), each
assigned to a node whose supervisor probes it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from testing.fake_member import FakeMemberProcess
from testing.services import postgres_missing, redis_missing, start_postgres, start_redis
from tests.helpers import ROOT, answers, clean_env, free_port, wait_until

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(bool(redis_missing()), reason=redis_missing() or ""),
    pytest.mark.skipif(bool(postgres_missing()), reason=postgres_missing() or ""),
]

LEASE_S = 2
LOST_AFTER_S = 2


class Cluster:
    def __init__(self, tmp_path, gemma_model):
        self.pg = start_postgres()
        self.redis = start_redis()
        self.env = clean_env(
            tmp_path,
            DATABASE_URL=self.pg.url,
            REDIS_URL=self.redis.url,
            VIBEADMIN_MODEL=str(gemma_model.path),
            VIBEADMIN_MODEL_ID="stand-in",
            VIBEADMIN_LEASE_S=str(LEASE_S),
            VIBEADMIN_NODE_LOST_AFTER_S=str(LOST_AFTER_S),
            VIBEADMIN_PROBE_INTERVAL_S="0.3",
            VIBEADMIN_REFRESH_S="0.2",
            VIBEADMIN_MEMBERS="0",
            PYTHONUNBUFFERED="1",
        )
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = tmp_path
        self.fakes: list[FakeMemberProcess] = []
        self.gateways: list[str] = []

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def spawn(self, name: str, *args: str) -> None:
        log = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - the process keeps it
        self.procs[name] = subprocess.Popen(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def start(self, **fake_options) -> Cluster:
        self.manage("migrate", "--noinput", "-v", "0")
        for node in ("n1", "n2"):
            fake = FakeMemberProcess(name=node, **fake_options).start()
            self.fakes.append(fake)
            self.manage("pool", "add", "--url", fake.url, "--node", node, "--name", f"on-{node}")
            self.spawn(f"supervise-{node}", "supervise", "--node", node)
        self.key = self.manage("apikey", "create", "school").strip().splitlines()[-1]
        for i in range(2):
            port = free_port()
            self.spawn(
                f"gateway-{i}",
                "serve",
                "--no-supervisor",
                "--port",
                str(port),
                "--api-port",
                str(free_port()),
            )
            self.gateways.append(f"http://127.0.0.1:{port}")
        wait_until(
            lambda: all(answers(g + "/v1/openapi.json") for g in self.gateways),
            60,
            what="both gateways to answer",
        )
        wait_until(lambda: self.ready_members() == {"on-n1", "on-n2"}, 60, what="both members to be ready")
        return self

    def status(self) -> list[dict]:
        return json.loads(self.manage("pool", "status", "--json"))

    def ready_members(self) -> set[str]:
        return {m["name"] for m in self.status() if m["state"] == "ready" and not m["node_lost"]}

    def chat(self, gateway: str, *, stream: bool = False, max_tokens: int = 4) -> tuple[int, str]:
        body = {
            "model": "vibethinker",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens,
            "stream": stream,
        }
        request = urllib.request.Request(
            gateway + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
                return response.status, response.headers.get("X-Vibeadmin-Member", "")
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    def leases(self) -> int:
        import redis

        client = redis.Redis.from_url(self.redis.url)
        now = time.time()
        return sum(client.zcount(k, now, "+inf") for k in client.scan_iter(match="vibeadmin:inflight:*"))

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for fake in self.fakes:
            fake.stop()
        self.redis.stop()
        self.pg.stop()


@pytest.fixture
def cluster(tmp_path, gemma_model):
    made = []

    def make(**fake_options) -> Cluster:
        made.append(Cluster(tmp_path, gemma_model))
        return made[-1].start(**fake_options)

    yield make
    for c in made:
        c.stop()


def test_two_gateways_keep_every_member_within_its_capacity(cluster):
    c = cluster(ttft=0.05, tpt=0.01)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: c.chat(c.gateways[i % 2]), range(24)))
    assert [status for status, _ in results] == [200] * 24
    assert {member for _, member in results} == {"on-n1", "on-n2"}
    # One generation at a time per member, although two gateways routed to them.
    assert [fake.stats()["max_concurrent"] for fake in c.fakes] == [1, 1]
    assert c.leases() == 0


def test_a_killed_gateway_frees_its_slots_once_its_leases_expire(cluster):
    c = cluster(ttft=0.05, tpt=0.5)
    with ThreadPoolExecutor(2) as pool:
        pool.submit(c.chat, c.gateways[0], stream=True, max_tokens=60)
        pool.submit(c.chat, c.gateways[0], stream=True, max_tokens=60)
        wait_until(lambda: c.leases() == 2, 10, what="both members to be busy through gateway 0")
        c.kill("gateway-0")
    assert c.leases() == 2  # the dead gateway's slots are still held...
    wait_until(lambda: c.leases() == 0, LEASE_S + 5, what="the dead gateway's leases to expire")
    wait_until(lambda: all(f.stats()["in_flight"] == 0 for f in c.fakes), 10, what="the members to notice")
    assert c.chat(c.gateways[1])[0] == 200  # ...and the other gateway uses them again


def test_a_killed_node_supervisor_marks_its_node_lost_and_its_member_unroutable(cluster):
    c = cluster(ttft=0.01)
    c.kill("supervise-n1")
    wait_until(lambda: any(m["node_lost"] for m in c.status()), LOST_AFTER_S + 10, what="node n1 to be lost")
    lost = {m["name"] for m in c.status() if m["node_lost"]}
    assert lost == {"on-n1"}
    time.sleep(0.5)  # one gateway refresh
    served_by = {c.chat(c.gateways[i % 2])[1] for i in range(6)}
    assert served_by == {"on-n2"}


def test_state_changes_race_safely_on_postgres(cluster):
    c = cluster()
    script = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from django.db import connection\n"
        "from pool.models import Member\n"
        "from pool.services.member_state import change_state\n"
        "def race(_):\n"
        "    m = Member.objects.get(name='on-n1')\n"
        "    m.state = 'ready'\n"
        "    won = change_state(m, 'unhealthy', reason='race')\n"
        "    connection.close()\n"
        "    return won\n"
        "with ThreadPoolExecutor(8) as pool:\n"
        "    print(sum(pool.map(race, range(8))))\n"
    )
    c.kill("supervise-n1")  # nobody else moves the member while we race
    assert c.manage("shell", "-c", script).strip().splitlines()[-1] == "1"


def test_round_robin_takes_turns_across_both_gateways(cluster):
    c = cluster(ttft=0.01)
    c.manage("pool", "strategy", "round_robin")
    time.sleep(0.5)  # one gateway refresh
    served = [c.chat(c.gateways[i % 2])[1] for i in range(8)]
    # One shared turn counter: strictly alternating. Each gateway counting alone would
    # send its first request to the same member as the other's (a, a, b, b, ...).
    assert all(served[i] != served[i + 1] for i in range(len(served) - 1)), served


def test_the_queue_depth_of_every_gateway_is_seen_from_anywhere(cluster):
    from pool.gateway.slots_redis import SharedSlots

    c = cluster(ttft=0.05, tpt=0.5)
    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):  # two members busy, two requests waiting in gateway 0's queue
            pool.submit(c.chat, c.gateways[0], stream=True, max_tokens=8)
        depth = wait_until(
            lambda: SharedSlots(c.redis.url).waiting_live() >= 2, 10, what="gateway 0 to report its queue"
        )
    assert depth
