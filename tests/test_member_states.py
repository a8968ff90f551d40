"""The member state machine: states.TRANSITIONS is the only source of moves, change_state
refuses any other, and docs/architecture.md draws exactly these edges."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pool.models import Member, states
from pool.services.member_state import change_state

ARCHITECTURE = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def drawn_edges() -> set[tuple[str, str]]:
    diagram = ARCHITECTURE.read_text().split("stateDiagram-v2", 1)[1].split("```", 1)[0]
    return set(re.findall(r"^\s*(\w+) --> (\w+):", diagram, re.M))


def test_the_architecture_diagram_draws_every_transition_and_no_other():
    assert drawn_edges() == set(states.TRANSITIONS)


def test_every_transition_joins_known_states():
    known = {state for state, _ in states.CHOICES}
    assert {state for edge in states.TRANSITIONS for state in edge} <= known


@pytest.mark.django_db
def test_change_state_refuses_a_move_the_machine_does_not_have():
    member = Member.objects.create(name="m1", state=states.STOPPED)
    with pytest.raises(ValueError, match="stopped -> ready"):
        change_state(member, states.READY)
    member.refresh_from_db()
    assert member.state == states.STOPPED


@pytest.mark.django_db
def test_change_state_makes_a_move_the_machine_has():
    member = Member.objects.create(name="m1", state=states.STOPPED)
    assert change_state(member, states.STARTING, reason="spawned")
    member.refresh_from_db()
    assert member.state == states.STARTING
