"""Member states, and the moves between them. No project imports here: everything else
imports this. TRANSITIONS is the whole state machine: pool/services/member_state.py refuses any other
move, and docs/architecture.md draws the same edges (a test compares them).
"""

STARTING = "starting"
READY = "ready"
DRAINING = "draining"
STOPPED = "stopped"
UNHEALTHY = "unhealthy"
FAILED = "failed"

CHOICES = [
    (STARTING, "starting"),
    (READY, "ready"),
    (DRAINING, "draining"),
    (STOPPED, "stopped"),
    (UNHEALTHY, "unhealthy"),
    (FAILED, "failed"),
]

# Only these get new requests from the gateway.
ROUTABLE_STATES = (READY,)
# A process is (or should be) alive in these.
RUNNING_STATES = (STARTING, READY, DRAINING, UNHEALTHY)
# Nothing runs in these.
STOPPED_STATES = (STOPPED, FAILED)

# (from, to): why. A same-state change with a reason (a crash's restart) is always allowed.
TRANSITIONS: dict[tuple[str, str], str] = {
    (STOPPED, STARTING): "the supervisor spawned it (a remote member: started probing it)",
    (FAILED, STARTING): "the operator pressed start, which forgave the crashes",
    (STOPPED, FAILED): "it cannot start at all (its engine's binary is missing): retrying would not help",
    (STARTING, READY): "the first probe answered: the model is loaded",
    (STARTING, UNHEALTHY): "a remote member did not answer N probes",
    (STARTING, FAILED): "the process exited once too often",
    (READY, UNHEALTHY): "N probes failed in a row, or real traffic failed on it (passive check)",
    (READY, STARTING): "the process exited; restarted after a back-off",
    (READY, FAILED): "the process exited once too often",
    (UNHEALTHY, READY): "M probes answered in a row",
    (UNHEALTHY, STARTING): "the process exited, or was killed for staying sick; restarted after a back-off",
    (UNHEALTHY, FAILED): "the process exited once too often",
    (STARTING, DRAINING): "the operator stopped, drained, restarted or removed it",
    (READY, DRAINING): "the operator stopped, drained, restarted or removed it",
    (UNHEALTHY, DRAINING): "the operator stopped, drained, restarted or removed it",
    (DRAINING, READY): "the operator started it again before it stopped",
    (DRAINING, STOPPED): "idle, or its drain deadline passed, and the process is gone",
    (STARTING, STOPPED): "its process was gone when the supervisor started, or vibeadmin shut down",
    (READY, STOPPED): "its process was gone when the supervisor started, or vibeadmin shut down",
    (UNHEALTHY, STOPPED): "its process was gone when the supervisor started, or vibeadmin shut down",
}


def can_change(old: str, new: str) -> bool:
    return old == new or (old, new) in TRANSITIONS


LOCAL = "local"
REMOTE = "remote"
KIND_CHOICES = [(LOCAL, "local process"), (REMOTE, "remote URL")]

# What a member runs. llama-server decodes up to `slots` answers per step (continuous
# batching); a llama-cpp-python server generates one answer at a time.
LLAMA_SERVER = "llama-server"
LLAMA_CPP_PYTHON = "llama-cpp-python"
ENGINE_CHOICES = [
    (LLAMA_SERVER, "llama-server (llama.cpp's own, batching)"),
    (LLAMA_CPP_PYTHON, "llama-cpp-python"),
]
ENGINES = (LLAMA_SERVER, LLAMA_CPP_PYTHON)
