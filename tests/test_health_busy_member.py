"""A busy member is never taken for a sick one: while a real llama.cpp member generates,
the supervisor's probes (/openapi.json, which takes no model lock) still answer, and
drain waits for the real in-flight request to end."""

import json
import threading
import urllib.request

import pytest

from pool import inflight
from pool.models import Member, PoolEvent, states
from pool.services.members import member_add, member_drain
from pool.supervisor import process
from tests.helpers import reconcile_until

pytestmark = [pytest.mark.django_db, pytest.mark.real_model]

LOAD_TIMEOUT_S = 120


@pytest.fixture
def ready_member(make_supervisor, gemma_model, settings):
    settings.VIBEADMIN_PROBE_INTERVAL_S = 0.1
    settings.VIBEADMIN_PROBE_TIMEOUT_S = 0.5  # far less than the generation takes
    settings.VIBEADMIN_UNHEALTHY_AFTER = 1  # one slow probe would be enough to eject
    supervisor = make_supervisor(model=gemma_model, command_for=process.member_command)
    member = member_add(engine=states.LLAMA_CPP_PYTHON)  # the engine whose model lock this is about
    reconcile_until(
        supervisor,
        lambda: Member.objects.get(pk=member.pk).state == states.READY,
        LOAD_TIMEOUT_S,
        what="the real member to be ready",
    )
    member.refresh_from_db()
    return supervisor, member


def generate(member: Member, tokens: int, done: threading.Event) -> None:
    body = {
        "messages": [{"role": "user", "content": "Tell a long story about a lighthouse."}],
        "max_tokens": tokens,
        "stream": True,
    }
    request = urllib.request.Request(
        member.base_url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {member.api_key}"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        for line in response:
            if line.startswith(b"data: [DONE]"):
                break
    done.set()


def test_a_member_busy_generating_stays_ready(ready_member):
    supervisor, member = ready_member
    done = threading.Event()
    worker = threading.Thread(target=generate, args=(member, 96, done))
    worker.start()
    probes = 0
    while not done.is_set():
        supervisor.reconcile()
        member.refresh_from_db()
        assert member.state == states.READY, member.last_error
        probes += member.last_probe_ok is True
    worker.join()
    assert probes > 3  # it was probed, and answered, while it generated
    assert not PoolEvent.objects.filter(member_name=member.name, message__contains="unhealthy").exists()


def test_drain_waits_for_a_real_streamed_request(ready_member):
    supervisor, member = ready_member
    done = threading.Event()
    inflight.acquire(member.pk)  # as the gateway counts the request it relays
    worker = threading.Thread(target=generate, args=(member, 64, done))
    worker.start()
    try:
        member_drain(member=member)
        reconcile_until(
            supervisor, lambda: Member.objects.get(pk=member.pk).state == states.DRAINING, what="draining"
        )
        for _ in range(5):
            supervisor.reconcile()
            assert Member.objects.get(pk=member.pk).state == states.DRAINING  # still generating
        done.wait(120)
    finally:
        inflight.release(member.pk)
        worker.join()
    reconcile_until(
        supervisor,
        lambda: Member.objects.get(pk=member.pk).state == states.STOPPED,
        what="the drained member to stop",
    )
    assert done.is_set()
