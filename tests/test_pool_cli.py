"""`manage.py pool ...`: the operator's command line. It changes desired state only and
says what went wrong in one line. Most tests call the command in-process; the ones about
exit codes and messages run it as an operator would, in a child process."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from pool.models import Member, Node, PoolSettings, states
from tests.helpers import manage, member_names, one_line_error

pytestmark = pytest.mark.django_db

REQUIRED_KEYS = (
    "name",
    "kind",
    "node",
    "state",
    "pid",
    "port",
    "url",
    "weight",
    "gpu",
    "restarts",
    "last_error",
)


def pool(*args: str) -> str:
    out = StringIO()
    call_command("pool", *args, stdout=out)
    return out.getvalue()


def test_status_says_so_when_the_pool_is_empty():
    assert "The pool has no members" in pool("status")


def test_status_shows_each_member_in_a_table():
    Member.objects.create(
        name="m1",
        state=states.READY,
        pid=4242,
        port=40001,
        weight=3,
        engine=states.LLAMA_SERVER,
        slots=8,
        max_inflight=8,
    )
    Member.objects.create(
        name="gpu2",
        kind=states.REMOTE,
        url="http://gpu2:8080",
        state=states.UNHEALTHY,
        last_error="no answer on /openapi.json: timed out",
    )

    lines = pool("status").splitlines()

    header = "NAME KIND ENGINE MODEL WANT STATE PID ADDRESS SLOTS WEIGHT GPU RESTARTS LAST ERROR"
    assert " ".join(lines[0].split()) == header
    assert lines[1].split() == [
        "m1",
        "local",
        "llama-server",
        "-",  # no library model: from before the library
        "run",
        "ready",
        "4242",
        "127.0.0.1:40001",
        "8",
        "3",
        "-",
        "0",
    ]
    assert lines[2].split()[:8] == [
        "gpu2",
        "remote",
        "llama-cpp-python",
        "-",
        "run",
        "unhealthy",
        "-",
        "http://gpu2:8080",
    ]
    assert lines[2].endswith("no answer on /openapi.json: timed out")


def test_status_json_lists_every_member_with_its_observed_state():
    Member.objects.create(name="m1", state=states.READY, pid=4242, port=40001, gpu=1, last_error="boom")
    Member.objects.create(name="gpu2", kind=states.REMOTE, url="http://gpu2:8080", should_run=False)

    listed = json.loads(pool("status", "--json"))

    assert [m["name"] for m in listed] == ["m1", "gpu2"]
    local, remote = listed
    assert {key: local[key] for key in REQUIRED_KEYS} == {
        "name": "m1",
        "kind": "local",
        "node": "local",
        "state": "ready",
        "pid": 4242,
        "port": 40001,
        "url": "http://127.0.0.1:40001",
        "weight": 1,
        "gpu": 1,
        "restarts": 0,
        "last_error": "boom",
    }
    assert remote["kind"] == "remote" and remote["url"] == "http://gpu2:8080"
    assert remote["wants"] == "stop" and remote["pid"] is None


def test_add_creates_a_local_member_that_wants_to_run():
    out = pool("add")

    member = Member.objects.get()
    assert (member.name, member.kind, member.should_run, member.state) == (
        "m1",
        states.LOCAL,
        True,
        states.STOPPED,
    )
    assert "Added m1" in out


def test_add_with_a_url_creates_a_remote_member_with_its_weight_and_name():
    pool("add", "--url", "http://gpu2:8080/", "--weight", "3", "--name", "gpu2")

    member = Member.objects.get()
    assert (member.name, member.kind, member.url, member.weight) == (
        "gpu2",
        states.REMOTE,
        "http://gpu2:8080",
        3,
    )


def test_add_can_pin_a_local_member_to_a_gpu():
    pool("add", "--gpu", "1")

    assert Member.objects.get().gpu == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--url", "not-a-url"], "'not-a-url' is not a valid member URL"),
        (["--url", "http://gpu2:http"], "has an invalid port"),
        (["--weight", "0"], "weight must be between 1 and 1000"),
        (["--gpu", "-1"], "GPU index must be 0 or more"),
        (["--name", "Not A Slug"], "is not a valid member name"),
    ],
)
def test_add_refuses_bad_input_and_creates_nothing(args, message):
    with pytest.raises(CommandError, match=message):
        pool("add", *args)

    assert not Member.objects.exists()


def test_add_refuses_a_name_that_is_taken():
    pool("add", "--name", "m1")

    with pytest.raises(CommandError, match="a member named 'm1' already exists"):
        pool("add", "--name", "m1")
    assert Member.objects.count() == 1


@pytest.mark.parametrize(
    "action, wanted",
    [
        ("stop", {"should_run": False, "restart_requested": False, "remove_requested": False}),
        ("drain", {"should_run": False, "restart_requested": False, "remove_requested": False}),
        ("restart", {"should_run": True, "restart_requested": True, "remove_requested": False}),
        ("remove", {"should_run": False, "restart_requested": False, "remove_requested": True}),
    ],
)
def test_member_actions_change_desired_state_only(action, wanted):
    Member.objects.create(name="m1", state=states.READY, pid=4242, port=40001)

    out = pool(action, "m1")

    member = Member.objects.get()
    assert {field: getattr(member, field) for field in wanted} == wanted
    assert (member.state, member.pid) == (states.READY, 4242)  # the supervisor does the rest
    assert f"m1: {action} requested." in out


def test_start_gives_a_failed_member_fresh_retries():
    Member.objects.create(name="m1", state=states.FAILED, restarts=6, should_run=True)

    pool("start", "m1")

    assert Member.objects.get().restarts == 0


def test_an_unknown_member_name_is_an_error_that_lists_the_known_ones():
    Member.objects.create(name="m1")
    Member.objects.create(name="m2")

    with pytest.raises(CommandError, match="no member named 'm9'; known members: m1, m2"):
        pool("stop", "m9")


def test_scale_adds_members_and_says_what_it_did():
    out = pool("scale", "2")

    assert list(Member.objects.values_list("name", flat=True)) == ["m1", "m2"]
    assert "m1: add" in out and "m2: add" in out


def test_scale_says_when_there_is_nothing_to_do():
    pool("scale", "1")

    assert "Nothing to do" in pool("scale", "1")


def test_an_action_warns_when_no_supervisor_will_carry_it_out():
    assert "no supervisor is running" in pool("add")


def test_an_action_does_not_warn_while_a_supervisor_reports_in():
    Node.objects.create(name="local", last_seen_at=timezone.now(), pid=1)

    assert "no supervisor" not in pool("add")


def test_strategy_lists_the_strategies_and_marks_the_current_one():
    lines = pool("strategy").splitlines()

    assert "* least_connections" in lines
    assert "  round_robin" in lines


def test_strategy_sets_the_pool_strategy():
    pool("strategy", "round_robin")

    assert PoolSettings.load().strategy == "round_robin"


def test_an_unknown_strategy_is_refused_with_the_valid_names():
    with pytest.raises(CommandError, match="unknown strategy 'fastest'; choose one of round_robin, "):
        pool("strategy", "fastest")
    assert PoolSettings.load().strategy == "least_connections"


def test_status_does_not_create_the_pool_settings_that_mark_a_first_run_as_done():
    pool("status")

    assert not PoolSettings.objects.exists()


# --- as an operator runs it ---------------------------------------------------------------


def test_a_malformed_url_fails_with_one_line_and_leaves_no_member(data_dir):
    result = manage("pool", "add", "--url", "not-a-url", data_dir=data_dir)

    assert (
        one_line_error(result) == "CommandError: 'not-a-url' is not a valid member URL: use http://HOST:PORT"
    )
    assert member_names(data_dir) == []


def test_an_unknown_member_fails_with_one_line(data_dir):
    manage("pool", "add", "--name", "m1", data_dir=data_dir)

    result = manage("pool", "drain", "ghost", data_dir=data_dir)

    assert one_line_error(result) == "CommandError: no member named 'ghost'; known members: m1"


def test_status_json_is_readable_by_another_process(data_dir):
    manage("pool", "add", "--url", "http://gpu2:8080", "--name", "gpu2", data_dir=data_dir)

    result = manage("pool", "status", "--json", data_dir=data_dir)

    assert result.returncode == 0, result.stderr
    assert [(m["name"], m["state"]) for m in json.loads(result.stdout)] == [("gpu2", "stopped")]


def test_add_takes_an_engine_and_slots():
    out = pool("add", "--engine", "llama-server", "--slots", "8")

    member = Member.objects.get()
    assert (member.engine, member.slots, member.max_inflight) == (states.LLAMA_SERVER, 8, 8)
    assert "local llama-server member with 8 slots" in out


def test_add_refuses_slots_for_a_llama_cpp_python_member():
    with pytest.raises(CommandError, match="one answer at a time"):
        pool("add", "--engine", "llama-cpp-python", "--slots", "4")


def test_set_changes_slots_and_weight_and_says_when_they_apply():
    pool("add", "--engine", "llama-server", "--slots", "8")

    out = pool("set", "m1", "--slots", "4", "--weight", "2")

    member = Member.objects.get()
    assert (member.slots, member.weight) == (4, 2)
    assert member.max_inflight == 8  # the running process still has 8 until it restarts
    assert "next start" in out


def test_set_gives_a_remote_member_a_key_and_its_slots_back_to_auto():
    pool("add", "--url", "http://gpu2:8080", "--slots", "16")

    pool("set", "m1", "--api-key", "s3cret", "--slots", "auto")

    member = Member.objects.get()
    assert (member.api_key, member.slots) == ("s3cret", None)


def test_set_without_anything_to_set_says_what_it_takes():
    pool("add")
    with pytest.raises(CommandError, match="--slots, --weight"):
        pool("set", "m1")
