"""A rollout's states, and the moves between them. No project imports here. TRANSITIONS is
the whole state machine: pool/rollouts/machine.py refuses any other move, and
docs/architecture.md draws the same edges (a test compares them)."""

PENDING = "pending"
CANARY = "canary"
REPLACING = "replacing"
ROLLING_BACK = "rolling_back"
DONE = "done"
ROLLED_BACK = "rolled_back"
ABORTED = "aborted"
FAILED = "failed"

CHOICES = [
    (s, s.replace("_", " "))
    for s in (PENDING, CANARY, REPLACING, ROLLING_BACK, DONE, ROLLED_BACK, ABORTED, FAILED)
]
ACTIVE_STATES = (PENDING, CANARY, REPLACING, ROLLING_BACK)
FINISHED_STATES = (DONE, ROLLED_BACK, ABORTED, FAILED)

TRANSITIONS: dict[tuple[str, str], str] = {
    (PENDING, REPLACING): "a rolling replacement: the first member is replaced",
    (PENDING, CANARY): "a canary: its member is started beside the others",
    (PENDING, FAILED): "nothing to roll: no member serves the primary model",
    (CANARY, REPLACING): "the gate passed it (or no gate: the operator promotes it)",
    (CANARY, ROLLING_BACK): "the gate failed it, its member failed, or the operator aborted",
    (REPLACING, DONE): "every member serves the new model",
    (REPLACING, ROLLING_BACK): "a new member failed to start, or the operator aborted",
    (ROLLING_BACK, ROLLED_BACK): "the members serve the old model again",
    (ROLLING_BACK, ABORTED): "the operator's abort is done: the members serve the old model again",
    (ROLLING_BACK, FAILED): "a member of the old model could not be started again",
}


def can_change(old: str, new: str) -> bool:
    return old == new or (old, new) in TRANSITIONS
