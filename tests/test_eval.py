"""The built-in accuracy check (`manage.py pool eval`): the shipped problem set is what its
seeded generator makes and every answer in it is right; answers are read from \\boxed{}
or the last number and compared exactly; pass@1 comes with a Wilson interval; a run goes
through the gateway as a batch client (or to one member), stores every answer, and stops
when asked. The members here are testing.fake_member servers (small fake OpenAI servers):
a fake answers "tok0 tok1 ... tok7" to everything, so its answer is always 7, which is
exactly right for one shipped problem and wrong for the others."""

from __future__ import annotations

import re
import sqlite3
from fractions import Fraction

import pytest

from pool.eval import problems as problem_set
from pool.eval.cli import summary
from pool.eval.runner import eval_run, member_target
from pool.eval.runs import eval_create
from pool.final_answers import final_answer, is_correct
from pool.models import EvalAnswer, EvalRun, Member, states
from pool.models.quality import DONE, STOPPED, wilson_interval
from testing.fake_member import FakeMemberProcess
from tests.helpers import free_port, manage, start_serve, stop_serve, wait_until

SEVEN = "arithmetic-zh-001"  # the shipped problem whose answer is 7


def test_the_shipped_set_is_what_the_seeded_generator_makes():
    assert problem_set.SHIPPED.read_text(encoding="utf-8") == problem_set.dump(problem_set.generate())


def test_the_set_holds_200_or_more_problems_of_every_kind_in_both_languages():
    problems = problem_set.load()
    assert len(problems) >= 200
    assert len({p.id for p in problems}) == len(problems)
    assert {(p.kind, p.language) for p in problems} == {
        (kind, language) for kind in problem_set.KINDS for language in problem_set.LANGUAGES
    }
    quick = problems[: problem_set.QUICK]
    assert {p.kind for p in quick} == set(problem_set.KINDS) and {p.language for p in quick} == {"en", "zh"}


def test_every_arithmetic_answer_is_the_expressions_value():
    for p in problem_set.load():
        if p.kind == "arithmetic":
            expression = re.search(r"\$(.*)\$", p.problem)[1]
            python = expression.replace("\\times", "*").replace("\\div", "/")
            assert Fraction(eval(python)) == Fraction(p.answer), p  # digits and + - * / ( ) only


def test_every_linear_equations_answer_solves_it():
    side = r"(-?\d+)x ([+-]) (\d+)"
    for p in problem_set.load():
        if p.kind == "linear_equation":
            equation = re.search(r"\$([^$]*=[^$]*)\$", p.problem)[1]
            x = int(p.answer)
            left, right = equation.split(" = ")
            a, sign, b = re.fullmatch(side, left).groups()
            value = int(a) * x + (int(b) if sign == "+" else -int(b))
            both = re.fullmatch(side, right)
            if both:
                c, sign, d = both.groups()
                assert value == int(c) * x + (int(d) if sign == "+" else -int(d)), p
            else:
                assert value == int(right), p


@pytest.mark.parametrize(
    ("reply", "expected", "right"),
    [
        ("So the answer is \\boxed{5}.", "5", True),
        ("x = 4, so \\boxed{x = -13}", "-13", True),
        ("\\boxed{\\frac{5}{6}}", "5/6", True),
        ("\\boxed{-\\dfrac{3}{4}}", "-3/4", True),
        ("\\boxed{0.75}", "3/4", True),
        ("about 0.333", "1/3", False),
        ("The total is 1,442.", "1442", True),
        ("答案是 46 元。", "46", True),
        ("First 12, then \\boxed{7} and a remark about 9", "7", True),
        ("I cannot tell.", "7", False),
    ],
)
def test_the_final_answer_is_read_from_boxed_or_the_last_number(reply, expected, right):
    assert is_correct(reply, expected)[0] is right


def test_an_unclosed_box_falls_back_to_the_last_number():
    assert final_answer("so \\boxed{12")[0] == 12


def test_pass_at_1_comes_with_a_wilson_interval():
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


@pytest.fixture
def fake_member(db):
    fake = FakeMemberProcess(name="fake", ttft=0.0, tpt=0.0, max_tokens=8).start()
    member = Member.objects.create(name="m1", kind=states.REMOTE, url=fake.url, state=states.READY)
    yield member
    fake.stop()


def test_a_run_pinned_to_a_member_stores_every_answer_and_its_figures(fake_member):
    run, problems = eval_create(quick=True, member="m1", limit=4)

    run = eval_run(run, problems, member_target(fake_member), lambda line: None, parallel=2)

    assert (run.state, run.answered, run.correct) == (DONE, 4, 1)
    assert run.pass_at_1 == 0.25 and run.tokens_per_answer == 8
    seven = EvalAnswer.objects.get(run=run, problem_id=SEVEN)
    assert (seven.correct, seven.got, seven.completion_tokens) == (True, "7", 8)


def test_k_samples_give_pass_at_1_and_maj_at_k_from_the_same_answers(db):
    """The fake answers 7, 7, 8 in turn: each problem's three samples vote 7 by 2 of 3."""
    fake = FakeMemberProcess(
        name="fake", ttft=0.0, tpt=0.0, answers="\\boxed{7}|\\boxed{7}|\\boxed{8}"
    ).start()
    try:
        member = Member.objects.create(name="m1", kind=states.REMOTE, url=fake.url, state=states.READY)
        run, problems = eval_create(quick=True, member="m1", limit=4, samples=3)
        run = eval_run(run, problems, member_target(member), lambda line: None, parallel=1)
        assert (run.answered, run.sample_answers, run.correct, run.majority_correct) == (4, 12, 2, 1)
        assert (run.pass_at_1, run.maj_at_k) == (2 / 12, 0.25)
        assert run.unanimous == 0 and run.unanimous_right is None
        seven = EvalAnswer.objects.get(run=run, problem_id=SEVEN)
        assert (seven.samples_correct, seven.votes, seven.majority_correct) == (2, 2, True)

        fake.configure(answers="\\boxed{7}")
        run, problems = eval_create(quick=True, member="m1", limit=4, samples=3)
        run = eval_run(run, problems, member_target(member), lambda line: None, parallel=1)
        assert (run.unanimous, run.unanimous_correct, run.unanimous_right) == (4, 1, 0.25)
        assert "maj@3 1/4 = 25%" in summary(run)
    finally:
        fake.stop()


def test_a_run_stops_when_asked(fake_member):
    run, problems = eval_create(quick=True, member="m1", limit=5)

    def stop_after_the_first(line: str) -> None:
        EvalRun.objects.filter(pk=run.pk).update(stop_requested=True)

    run = eval_run(run, problems, member_target(fake_member), stop_after_the_first, parallel=1)

    assert (run.state, run.answered) == (STOPPED, 1)


def test_an_unknown_member_is_refused(db):
    with pytest.raises(ValueError, match="no member named 'ghost'"):
        eval_create(quick=True, member="ghost")


def test_pool_eval_goes_through_the_gateway_as_a_batch_client(data_dir, tmp_path):
    fake = FakeMemberProcess(name="fake", ttft=0.0, tpt=0.0, max_tokens=8).start()
    port, api_port = free_port(), free_port()
    env = {
        "VIBEADMIN_PORT": str(port),
        "VIBEADMIN_API_PORT": str(api_port),
        "VIBEADMIN_MEMBERS": "0",
        "VIBEADMIN_PROBE_INTERVAL_S": "0.2",
        "VIBEADMIN_HEALTHY_AFTER": "1",
        "VIBEADMIN_REFRESH_S": "0.1",
    }
    model = tmp_path / "stand-in.gguf"  # a remote member never loads it
    model.write_bytes(b"GGUF" + bytes(28))
    env["VIBEADMIN_MODEL"] = str(model)
    child = None
    try:
        assert (
            manage("pool", "add", "--url", fake.url, "--name", "m1", data_dir=data_dir, **env).returncode == 0
        )
        child = start_serve(data_dir, log=tmp_path / "serve.out", **env)
        database = sqlite3.connect(data_dir / "db.sqlite3")
        wait_until(
            lambda: database.execute("select state from pool_member").fetchone() == ("ready",),
            60,
            what="the fake member to be ready",
        )

        result = manage("pool", "eval", "--quick", "--limit", "2", data_dir=data_dir, timeout=120, **env)

        assert result.returncode == 0, result.stderr
        assert "2/2" in result.stdout and "pass@1 1/2 = 50% (95% CI 9%-91%)" in result.stdout
        assert database.execute("select state, answered, correct, member from pool_evalrun").fetchall() == [
            ("done", 2, 1, "")
        ]
        assert database.execute(
            "select priority from pool_apikey where name = 'quality-eval'"
        ).fetchall() == [("batch",)]
    finally:
        if child is not None:
            stop_serve(child, data_dir)
        fake.stop()


def test_pool_eval_killed_marks_its_run_stopped(data_dir, tmp_path):
    import signal
    import subprocess
    import sys

    from tests.helpers import ROOT, clean_env

    fake = FakeMemberProcess(name="fake", ttft=30.0, tpt=0.0, max_tokens=8).start()
    try:
        assert manage("pool", "add", "--url", fake.url, "--name", "m1", data_dir=data_dir).returncode == 0
        output = tmp_path / "eval.out"
        with output.open("w") as out:
            child = subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "pool", "eval", "--member", "m1", "--limit", "3"],
                cwd=ROOT,
                env=clean_env(data_dir, PYTHONUNBUFFERED="1"),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: "Ctrl-C stops it" in output.read_text(), 60, what="the eval to start asking")

        child.send_signal(signal.SIGTERM)

        assert child.wait(timeout=30) == 0, output.read_text()
        database = sqlite3.connect(data_dir / "db.sqlite3")
        assert database.execute("select state, answered from pool_evalrun").fetchall() == [("stopped", 0)]
        assert "Eval 1 stopped: pass@1 0/0" in output.read_text()
    finally:
        fake.stop()
