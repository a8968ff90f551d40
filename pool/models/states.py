"""Member states. No project imports here: everything else imports this.

    starting --first good probe--> ready --drain--> draining --idle or deadline--> stopped
    ready --N failed probes or passive failures--> unhealthy --M good probes--> ready
    starting --process exits, retries left--> starting (after back-off)
    starting --process exits, no retries left--> failed
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

LOCAL = "local"
REMOTE = "remote"
KIND_CHOICES = [(LOCAL, "local process"), (REMOTE, "remote URL")]

# What a member runs. llama-server decodes up to `slots` answers per step (continuous
# batching); a llama-cpp-python server generates one answer at a time.
LLAMA_SERVER = "llama-server"
LLAMA_CPP_PYTHON = "llama-cpp-python"
ENGINE_CHOICES = [(LLAMA_SERVER, "llama-server (llama.cpp's own, batching)"), (LLAMA_CPP_PYTHON, "llama-cpp-python")]
ENGINES = (LLAMA_SERVER, LLAMA_CPP_PYTHON)
