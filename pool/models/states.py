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
