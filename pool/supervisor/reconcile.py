"""The supervisor: one reconcile loop that converges real processes to desired state.

Each tick reads the members of this node, probes those that are due, and takes one step
per member (`step`). Every step is short and never blocks on a process: stopping sends
SIGTERM and comes back later for the SIGKILL, as supervisord does.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from pool import inflight, metrics
from pool.member_logs import read_tail
from pool.model_file import ModelChoice, ensure_model
from pool.models import Member, PoolEvent, states
from pool.services import events, nodes
from pool.services.member_state import change_state, forget, update_observed
from pool.services.model_hashing import Hasher
from pool.services.rollout_machine import RolloutMachine
from pool.supervisor import health, process

log = logging.getLogger("pool.supervisor.reconcile")

# A member that stays up this long after a crash has its back-off forgiven.
STABLE_AFTER_S = 60.0

# Builds a local member's command line: (member, model, port) -> argv.
CommandFor = Callable[[Member, ModelChoice, int], list[str]]


@dataclass
class Stopping:
    """A local member sent SIGTERM: when its grace runs out, and why it was stopped."""

    kill_at: float
    how: str


class Supervisor:
    def __init__(
        self,
        *,
        node: str | None = None,
        model: ModelChoice | None = None,
        command_for: CommandFor = process.member_command,
        rollouts: RolloutMachine | None = None,
    ):
        self.node = node or settings.VIBEADMIN_NODE
        self.model = model or ensure_model()
        # Tests swap in tiny child scripts here to crash, hang or ignore SIGTERM on cue.
        self.command_for = command_for
        self.stopping = threading.Event()
        self._last_probe: dict[int, float] = {}
        self._stopping: dict[int, Stopping] = {}  # member id -> its SIGTERM sent, awaiting exit
        self._kill_reasons: dict[int, str] = {}  # member id -> why the supervisor killed it
        self._probes = ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe")
        self.hasher = Hasher()  # the library's sha256s, one file at a time, off the tick
        # One supervisor runs the rollouts: serve's (a node's `supervise` passes none).
        self.rollouts = rollouts
        self._thread: threading.Thread | None = None

    # --- the loop -----------------------------------------------------------------------

    def run_forever(self) -> None:
        self.adopt()
        while not self.stopping.is_set():
            try:
                self.reconcile()
            except Exception:  # a bad tick (database busy, say) must not end supervision
                log.exception("reconcile failed; trying again next tick")
            finally:
                close_old_connections()
            self.stopping.wait(settings.VIBEADMIN_TICK_S)

    def start_thread(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run_forever, name="supervisor", daemon=True)
        self._thread.start()
        return self._thread

    def reconcile(self) -> None:
        """Bring every member of this node one step closer to what the operator wants."""
        self.heartbeat()
        self.hasher.poke()
        if self.rollouts is not None:
            self.rollouts.step()
        members = list(Member.objects.filter(node=self.node).select_related("model"))
        results = self.probe_due(members)
        for member in members:
            self.step(member, results.get(member.pk))

    def heartbeat(self) -> None:
        nodes.heartbeat(self.node)

    def probe_due(self, members: list[Member]) -> dict[int, health.ProbeResult]:
        now = time.monotonic()
        due = [
            m
            for m in members
            if m.state in states.RUNNING_STATES
            and m.base_url
            and (m.pid or not m.is_local)
            and (
                m.state == states.STARTING
                or now - self._last_probe.get(m.pk, 0) >= settings.VIBEADMIN_PROBE_INTERVAL_S
            )
        ]
        for m in due:
            self._last_probe[m.pk] = now
        timeout = settings.VIBEADMIN_PROBE_TIMEOUT_S
        futures = {m.pk: self._probes.submit(health.probe_member, m, timeout) for m in due}
        return {pk: future.result() for pk, future in futures.items()}

    # --- one member ---------------------------------------------------------------------

    def step(self, m: Member, probe: health.ProbeResult | None) -> None:
        if m.state in states.STOPPED_STATES:
            self.step_stopped(m)
        elif not m.wants_running and m.state != states.DRAINING:
            # ready/unhealthy/starting -> draining: the operator stopped, drained, restarted or removed it
            deadline = timezone.now() + timedelta(seconds=m.drain_timeout_s)
            change_state(m, states.DRAINING, drain_deadline=deadline)
        elif m.state == states.DRAINING:
            self.step_draining(m)
        elif m.is_local and not process.is_alive(m.pid):
            self.step_dead(m)
        elif probe is not None:
            self.step_probed(m, probe)

    def step_stopped(self, m: Member) -> None:
        if m.remove_requested:
            # stopped -> gone: the operator removed it
            forget(m)
        elif m.restart_requested:
            # stopped -> (next tick) starting: the restart's stop half is done
            update_observed(m, restart_requested=False)
        elif m.should_run and m.state == states.STOPPED:
            self.start(m)
        elif m.should_run and m.state == states.FAILED and m.restarts == 0:
            # failed -> starting: the operator pressed start, which forgave the crashes
            self.start(m)

    def step_dead(self, m: Member) -> None:
        if m.pid is None:
            # starting (waiting out a back-off) -> starting (spawned)
            if m.next_start_at is None or m.next_start_at <= timezone.now():
                self.start(m)
            return
        # starting/ready/unhealthy -> starting (back-off) or failed: the process exited
        tail = read_tail(m)
        code = process.exit_code(m.pid)
        process.forget(m.pid)
        # Where the supervisor killed it, that is the cause; its last output is only the symptom.
        error = self._kill_reasons.pop(m.pk, "") or (
            f"{process.describe_exit(code)}: {process.last_error_line(tail) or 'no output'}"
        )
        self.crashed(m, error, tail)

    def crashed(self, m: Member, error: str, tail: str) -> None:
        restarts = m.restarts + 1
        # Given up on or restarting, the dead process is forgotten and its last words kept.
        dead: dict[str, Any] = {
            "pid": None,
            "port": None,
            "restarts": restarts,
            "last_error": error,
            "log_tail": tail,
        }
        if restarts > settings.VIBEADMIN_MAX_RESTARTS:
            change_state(m, states.FAILED, reason=f"gave up after {m.restarts} restarts: {error}", **dead)
            return
        delay = min(settings.VIBEADMIN_BACKOFF_S * 2 ** (restarts - 1), settings.VIBEADMIN_BACKOFF_MAX_S)
        change_state(
            m,
            states.STARTING,
            reason=f"{error}; restart {restarts}/{settings.VIBEADMIN_MAX_RESTARTS} in {delay:g}s",
            next_start_at=timezone.now() + timedelta(seconds=delay),
            **dead,
        )

    def step_probed(self, m: Member, probe: health.ProbeResult) -> None:
        now = timezone.now()
        fields = self.probe_fields(m, probe, now)
        if m.state == states.STARTING:
            self.step_probed_starting(m, probe, fields, now)
        elif m.state == states.READY and fields.get("failures", 0) >= settings.VIBEADMIN_UNHEALTHY_AFTER:
            # ready -> unhealthy: N probes failed in a row
            change_state(m, states.UNHEALTHY, reason=probe.error, **fields)
        elif m.state == states.UNHEALTHY and fields.get("successes", 0) >= settings.VIBEADMIN_HEALTHY_AFTER:
            # unhealthy -> ready: M probes answered in a row
            change_state(m, states.READY, reason="probes answer again", **fields)
        elif m.state == states.UNHEALTHY and m.is_local and not probe.ok and self.sick_too_long(m, now):
            # unhealthy -> (killed) -> starting: a local process that stays sick is restarted,
            # counted as a crash so a member that never recovers still ends failed
            self.kill(m, f"unhealthy for {settings.VIBEADMIN_UNHEALTHY_RESTART_S:g}s; killed", fields)
        else:
            if m.restarts and m.ready_at and (now - m.ready_at).total_seconds() > STABLE_AFTER_S:
                fields["restarts"] = 0
            update_observed(m, **fields)

    def step_probed_starting(self, m: Member, probe: health.ProbeResult, fields: dict, now) -> None:
        if probe.ok:
            # starting -> ready: it answers, so the model is loaded (the server listens only then)
            change_state(m, states.READY, ready_at=now, **fields)
        elif (
            m.is_local
            and m.started_at
            and (now - m.started_at).total_seconds() > settings.VIBEADMIN_START_TIMEOUT_S
        ):
            self.kill(m, f"did not answer within {settings.VIBEADMIN_START_TIMEOUT_S:g}s; killed", {})
        elif not m.is_local and fields["failures"] >= settings.VIBEADMIN_UNHEALTHY_AFTER:
            # starting -> unhealthy: a remote URL that does not answer
            change_state(m, states.UNHEALTHY, reason=probe.error, **fields)
        else:
            update_observed(m, **fields)

    @staticmethod
    def probe_fields(m: Member, probe: health.ProbeResult, now) -> dict:
        """What a probe changes in the observed state, whatever the transition."""
        fields: dict = {"last_probe_at": now, "last_probe_ok": probe.ok}
        if m.is_local:
            fields["log_tail"] = read_tail(m)
        if probe.slots is not None and m.slots is None:
            # A remote llama-server's /props said how many answers it decodes at once.
            fields.update(max_inflight=probe.slots, engine=states.LLAMA_SERVER)
        if probe.engine_series:
            metrics.record_engine(m.name, probe.engine_series)
        if probe.ok:
            fields.update(successes=m.successes + 1, failures=0)
        else:
            fields.update(failures=m.failures + 1, successes=0)
            # A local member refuses probes while its model loads: expected, so it must not
            # hide the error that made it restart.
            if not (m.is_local and m.state == states.STARTING):
                fields["last_error"] = probe.error
        return fields

    def kill(self, m: Member, reason: str, fields: dict) -> None:
        """SIGKILL a local process; the next tick finds it dead and counts a crash, with this reason."""
        process.kill(m.pid)
        self._kill_reasons[m.pk] = reason
        update_observed(m, **{**fields, "last_error": reason})

    @staticmethod
    def sick_too_long(m: Member, now) -> bool:
        return (now - m.state_changed_at).total_seconds() > settings.VIBEADMIN_UNHEALTHY_RESTART_S

    def step_draining(self, m: Member) -> None:
        alive = m.is_local and process.is_alive(m.pid)
        if m.pk in self._stopping:
            self.step_terminated(m, alive)
            return
        if m.wants_running and (alive or not m.is_local):
            # draining -> ready: the operator started it again before it stopped
            change_state(m, states.READY, drain_deadline=None, reason="started again while draining")
            return
        # A stop during a long drain shortens the wait: the drain's newest timeout counts.
        deadline = m.state_changed_at + timedelta(seconds=m.drain_timeout_s)
        if m.drain_deadline is None or deadline < m.drain_deadline:
            update_observed(m, drain_deadline=deadline)
        busy = inflight.count(m.pk)
        if busy and m.drain_deadline and timezone.now() < m.drain_deadline and (alive or not m.is_local):
            return  # draining: waiting for in-flight requests
        how = f"deadline passed with {busy} in flight" if busy else "drained"
        if m.is_local and not alive:
            self.finish_stop(m, "its process had exited")
        elif not m.is_local:
            self.finish_stop(m, how)
        else:
            process.terminate(m.pid)
            self._stopping[m.pk] = Stopping(
                kill_at=time.monotonic() + settings.VIBEADMIN_STOP_GRACE_S, how=how
            )

    def step_terminated(self, m: Member, alive: bool) -> None:
        """SIGTERM was sent: wait for the process to go, and SIGKILL it once the grace is over."""
        stopping = self._stopping[m.pk]
        if not alive:
            self.finish_stop(m, stopping.how)
        elif time.monotonic() >= stopping.kill_at:
            process.kill(m.pid)
            stopping.kill_at = float("inf")
            stopping.how += "; killed: it ignored SIGTERM"
            update_observed(
                m, last_error=f"ignored SIGTERM; killed after {settings.VIBEADMIN_STOP_GRACE_S:g}s"
            )

    def finish_stop(self, m: Member, how: str) -> None:
        # draining -> stopped: idle (or past its deadline) and the process is gone
        self._stopping.pop(m.pk, None)
        if m.pid:
            process.forget(m.pid)
        change_state(m, states.STOPPED, reason=how, pid=None, port=None, drain_deadline=None, started_at=None)

    def start(self, m: Member) -> None:
        now = timezone.now()
        common = {"started_at": now, "next_start_at": None, "failures": 0, "successes": 0, "ready_at": None}
        if m.state == states.STOPPED:
            common["restarts"] = 0  # a clean start, not a crash's restart: the count starts over
        slots = m.wanted_slots()
        if slots is not None:
            common["max_inflight"] = slots
        if not m.is_local:
            # stopped -> starting: a remote member is only probed, never spawned
            change_state(m, states.STARTING, **common)
            return
        port = process.free_port(settings.VIBEADMIN_MEMBER_BIND)
        # A fresh key each start: only the gateway and the probes, which read it here, get in.
        m.api_key = secrets.token_urlsafe(32)
        try:
            command = self.command_for(m, self.model_for(m), port)
        except process.MemberCommandError as exc:
            # stopped/starting -> failed: it cannot start as configured (no llama-server binary)
            # (restarts >= 1: only the operator's next start tries again, not every tick)
            change_state(
                m,
                states.FAILED,
                reason=str(exc),
                last_error=str(exc),
                pid=None,
                port=None,
                next_start_at=None,
                restarts=max(m.restarts, 1),
            )
            return
        pid = process.spawn(m, command)
        # stopped -> starting: process up, model loading
        change_state(
            m,
            states.STARTING,
            reason=f"pid {pid}, port {port}",
            pid=pid,
            port=port,
            host=settings.VIBEADMIN_ADVERTISE_HOST,
            api_key=m.api_key,
            **common,
        )

    def model_for(self, m: Member) -> ModelChoice:
        """The member's library model, as the engines are given it; the supervisor's own
        (the configured model) for a member from before the library."""
        if m.model is None:
            return self.model
        model = m.model
        return ModelChoice(Path(model.path), model.name, model.chat_format, False, model.about)

    # --- its own start and end ----------------------------------------------------------

    def adopt(self) -> None:
        """After a restart of the supervisor: keep members whose process still runs, and
        clear the rest so the loop starts them again."""
        for m in Member.objects.filter(node=self.node, kind=states.LOCAL).exclude(
            state__in=states.STOPPED_STATES
        ):
            if m.pid and process.is_member_process(m.pid, m.port):
                # Its watchdog waits VIBEADMIN_ORPHAN_GRACE_S for this lease, then stops it.
                leased = "" if process.adopt_lease(m.pid) else " (it has no watchdog to hold)"
                events.record(
                    PoolEvent.STATE,
                    f"{m.name}: adopted running process {m.pid}{leased}",
                    member_name=m.name,
                )
                continue
            change_state(
                m,
                states.STOPPED,
                reason="its process was gone when the supervisor started",
                pid=None,
                port=None,
                drain_deadline=None,
            )

    def shutdown(self) -> None:
        """Stop the loop and this node's processes; desired state is kept for the next start."""
        self.stopping.set()
        if self._thread and self._thread is not threading.current_thread():
            # Let the current tick finish first: it could be spawning a member right now.
            self._thread.join(timeout=60)
        members = [m for m in Member.objects.filter(node=self.node, kind=states.LOCAL) if m.pid]
        with ThreadPoolExecutor(max_workers=max(1, len(members))) as pool:
            list(pool.map(lambda m: process.stop(m.pid, settings.VIBEADMIN_STOP_GRACE_S), members))
        for m in members:
            m.refresh_from_db()
            change_state(
                m, states.STOPPED, reason="vibeadmin shut down", pid=None, port=None, drain_deadline=None
            )
        self._probes.shutdown(wait=False)
        self.hasher.join(timeout=5)
