"""Rolling replacement and canaries, driven tick by tick through the supervisor's reconcile
loop with stub members (tests/stub_member.py: up in a fraction of a second, no model
loaded). The memory check is swapped for yes or no; real llama-server rollouts are in
bench.rollout."""

from __future__ import annotations

import http.server
import json
import os
import re
import threading
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from pool.model_file import ModelChoice
from pool.models import Member, Model, PoolEvent, PoolSettings, Rollout, states
from pool.models import rollout_states as rs
from pool.services import ActionError
from pool.services.library import library_ensure_configured, model_add
from pool.services.members import member_add
from pool.services.rollout_machine import RolloutMachine
from pool.services.rollouts import PROMOTE, ROLL_BACK, rollout_abort, rollout_decide, rollout_start
from testing.tiny_gguf import write_tiny_gguf
from tests.helpers import reconcile_until

ARCHITECTURE = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


@pytest.fixture
def library(tmp_path, db) -> tuple[Model, Model]:
    """Two models: "old" (the primary, two members) and "new"."""
    old = library_ensure_configured(ModelChoice(write_tiny_gguf(tmp_path / "old.gguf"), "old", "", False))
    new = model_add(path=write_tiny_gguf(tmp_path / "new.gguf"), name="new")
    member_add(name="m1")
    member_add(name="m2")
    return old, new


def pool_with(make_supervisor, *, room: bool, gate_pid: int | None = None):
    machine = RolloutMachine(room=lambda model, like: room, launch_gate=lambda r: gate_pid or os.getpid())
    supervisor = make_supervisor(rollouts=machine)
    reconcile_until(supervisor, lambda: ready() == {"m1", "m2"}, what="both members ready")
    return supervisor


def ready() -> set[str]:
    return set(Member.objects.filter(state=states.READY).values_list("name", flat=True))


def rollout() -> Rollout:
    return Rollout.objects.select_related("source", "target").get()


class Watch:
    """Checked at every tick: what a rollout must never do."""

    def __init__(self, floor: int) -> None:
        self.floor = floor  # members that must stay ready throughout
        self.lowest = 99

    def __call__(self, done) -> bool:
        serving = Member.objects.filter(state=states.READY, should_run=True, remove_requested=False)
        self.lowest = min(self.lowest, serving.count())
        for member in Member.objects.filter(remove_requested=True, model__name="old"):
            # an old member is drained only once a replacement on the new model is ready
            assert Member.objects.filter(model__name="new", state=states.READY).exists(), member.name
        return done()


def test_a_rolling_replacement_starts_each_new_member_before_it_drains_an_old_one(make_supervisor, library):
    old, new = library
    supervisor = pool_with(make_supervisor, room=True)
    rollout_start(target=new)
    watch = Watch(floor=2)
    reconcile_until(
        supervisor, lambda: watch(lambda: rollout().state == rs.DONE), 30, what="the rollout done"
    )
    assert watch.lowest >= 2  # surge: never fewer than the two members serving
    reconcile_until(supervisor, lambda: Member.objects.count() == 2, 30, what="the old members gone")
    assert set(Member.objects.values_list("model__name", flat=True)) == {"new"}
    assert PoolSettings.load().primary_model == new
    assert rollout().replaced == 2 and rollout().surge is True
    changes = PoolEvent.objects.filter(kind=PoolEvent.CHANGE, actor_kind="rollout")
    assert changes.filter(subject="pool settings", setting="primary_model", new_value="new").exists()
    assert changes.filter(subject="member m1", setting="remove_requested").exists()


def test_without_room_each_member_is_drained_first_and_restarted_on_the_new_model(make_supervisor, library):
    old, new = library
    supervisor = pool_with(make_supervisor, room=False)
    rollout_start(target=new)
    watch = Watch(floor=1)
    reconcile_until(
        supervisor, lambda: watch(lambda: rollout().state == rs.DONE), 30, what="the rollout done"
    )
    assert watch.lowest >= 1  # one member at a time: the other serves meanwhile
    assert {(m.name, m.model.name) for m in Member.objects.select_related("model")} == {
        ("m1", "new"),
        ("m2", "new"),
    }
    assert rollout().surge is False


def test_an_abort_brings_the_pool_back_to_where_it_started(make_supervisor, library):
    old, new = library
    supervisor = pool_with(make_supervisor, room=True)
    rollout_start(target=new)
    reconcile_until(supervisor, lambda: rollout().replaced == 1, 30, what="one member replaced")
    rollout_abort(rollout=rollout())
    reconcile_until(supervisor, lambda: rollout().state == rs.ABORTED, 30, what="aborted")
    reconcile_until(
        supervisor,
        lambda: (
            set(Member.objects.filter(remove_requested=False).values_list("model__name", flat=True))
            == {"old"}
            and len(ready()) == 2
        ),
        30,
        what="two members of the old model ready",
    )
    assert PoolSettings.load().primary_model == old


def test_a_canary_rolled_back_by_its_gate_is_drained_and_the_webhook_told(make_supervisor, library, settings):
    old, new = library
    received: list[dict] = []
    hook = webhook(received)
    PoolSettings.objects.update_or_create(
        pk=1, defaults={"alert_webhook_url": f"http://127.0.0.1:{hook.server_port}/hook"}
    )
    supervisor = pool_with(make_supervisor, room=True)
    rollout_start(target=new, canary_percent=10, gate=True)
    reconcile_until(supervisor, lambda: rollout().gate_pid is not None, 30, what="the gate launched")
    canary = rollout().new_member
    assert Member.objects.get(name=canary).model == new and Member.objects.filter(model=old).count() == 2
    rollout_decide(rollout=rollout(), verdict=ROLL_BACK, why="it answers worse")
    reconcile_until(supervisor, lambda: rollout().state == rs.ROLLED_BACK, 30, what="rolled back")
    reconcile_until(
        supervisor, lambda: not Member.objects.filter(name=canary).exists(), 30, what="canary gone"
    )
    assert ready() == {"m1", "m2"} and PoolSettings.load().primary_model == old
    threading.Event().wait(0.5)
    hook.shutdown()
    assert received and received[0]["commonLabels"]["alertname"] == "RolloutRolledBack"
    assert "it answers worse" in received[0]["commonAnnotations"]["summary"]


def test_a_promoted_canary_replaces_the_first_old_member_and_the_rest_follow(make_supervisor, library):
    old, new = library
    supervisor = pool_with(make_supervisor, room=True)
    rollout_start(target=new, canary_percent=50)
    reconcile_until(
        supervisor,
        lambda: Member.objects.filter(model=new, state=states.READY).exists(),
        30,
        what="canary ready",
    )
    assert rollout().state == rs.CANARY  # no gate: it waits for the operator
    rollout_decide(rollout=rollout(), verdict=PROMOTE, why="the operator promoted it")
    reconcile_until(supervisor, lambda: rollout().state == rs.DONE, 30, what="done")
    reconcile_until(supervisor, lambda: Member.objects.count() == 2, 30, what="two members left")
    assert set(Member.objects.values_list("model__name", flat=True)) == {"new"}


def test_a_canary_that_cannot_start_is_rolled_back(make_supervisor, library, settings):
    old, new = library
    from tests.helpers import stub_command

    fine, crash = stub_command(), stub_command("--exit", "error: unknown model architecture")
    machine = RolloutMachine(room=lambda *a: True, launch_gate=lambda r: os.getpid())
    supervisor = make_supervisor(
        rollouts=machine,
        command_for=lambda m, model, port: (crash if m.model == new else fine)(m, model, port),
    )
    reconcile_until(supervisor, lambda: ready() == {"m1", "m2"}, what="both ready")
    rollout_start(target=new, canary_percent=10, gate=True)
    reconcile_until(supervisor, lambda: rollout().state == rs.ROLLED_BACK, 30, what="rolled back")
    assert "the canary could not start" in rollout().reason


def test_rollouts_are_refused_when_they_make_no_sense(library):
    old, new = library
    with pytest.raises(ActionError, match="old is the primary model already"):
        rollout_start(target=old)
    with pytest.raises(ActionError, match="--gate and --tenant go with --canary"):
        rollout_start(target=new, gate=True)
    rollout_start(target=new)
    with pytest.raises(ActionError, match="a rollout is under way"):
        rollout_start(target=new)


@pytest.mark.parametrize(
    ("state", "code"), [(rs.DONE, 0), (rs.ROLLED_BACK, 3), (rs.ABORTED, 3), (rs.FAILED, 1)]
)
def test_wait_s_exit_code_says_how_it_ended(library, state, code):
    from pool.management.rollout_cli import wait

    old, new = library
    row = Rollout.objects.create(source=old, target=new, state=state, reason="because")
    if code == 0:
        wait(row, lambda line: None)
        return
    with pytest.raises(CommandError) as ended:
        wait(row, lambda line: None)
    assert ended.value.returncode == code


def test_status_json_shows_the_rollout(library):
    old, new = library
    call_command("pool", "rollout", "new", "--canary", "25", "--gate", stdout=StringIO())
    out = StringIO()
    call_command("pool", "rollout", "--status", "--json", stdout=out)
    shown = json.loads(out.getvalue())
    assert shown["source"] == "old" and shown["target"] == "new" and shown["state"] == rs.PENDING
    assert shown["canary_percent"] == 25 and shown["gate"] is True
    assert PoolEvent.objects.filter(subject__startswith="rollout", actor_kind="cli").exists()


def test_the_architecture_diagram_draws_every_rollout_transition_and_no_other():
    text = ARCHITECTURE.read_text().split("## A rollout's states", 1)[1]
    diagram = text.split("stateDiagram-v2", 1)[1].split("```", 1)[0]
    assert set(re.findall(r"^\s*(\w+) --> (\w+):", diagram, re.M)) == set(rs.TRANSITIONS)


def webhook(received: list[dict]) -> http.server.HTTPServer:
    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
