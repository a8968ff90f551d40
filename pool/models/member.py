from __future__ import annotations

import re
from urllib.parse import urlparse

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from pool.models import states
from pool.models.node import Node

# A member's share of traffic under the weighted strategies; the CLI, the forms and the
# actions all check against these.
MIN_WEIGHT = 1
MAX_WEIGHT = 1000
MAX_SLOTS = 256
# A member's name is a slug: it appears in URLs, log file names and metric labels.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# A key travels in an HTTP header: printable ASCII without spaces.
API_KEY_RE = re.compile(r"^[\x21-\x7e]{1,256}$")


def validate_remote_url(url: str) -> None:
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValidationError(f"{url!r} is not a valid member URL: use http://HOST:PORT")
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValidationError(f"{url!r} has an invalid port") from None


def _weight_range() -> list:
    message = f"weight must be between {MIN_WEIGHT} and {MAX_WEIGHT}"
    return [MinValueValidator(MIN_WEIGHT, message), MaxValueValidator(MAX_WEIGHT, message)]


def _slots_range() -> list:
    message = f"slots must be between 1 and {MAX_SLOTS}"
    return [MinValueValidator(1, message), MaxValueValidator(MAX_SLOTS, message)]


class MemberQuerySet(models.QuerySet):
    def routable(self) -> MemberQuerySet:
        """Members the gateway may send requests to: ready (or still serving while they
        stay wanted), wanted running, and on a node whose supervisor is reporting."""
        return self.filter(
            state__in=states.ROUTABLE_STATES, should_run=True, remove_requested=False, restart_requested=False
        ).exclude(node__in=Node.objects.lost().values("name"))


class Member(models.Model):
    """One llama.cpp inference server: a local process the supervisor spawns, or a remote URL."""

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[
            RegexValidator(
                NAME_RE, "%(value)r is not a valid member name: use lowercase letters, digits, - and _"
            )
        ],
    )
    kind = models.CharField(max_length=16, choices=states.KIND_CHOICES, default=states.LOCAL)
    url = models.CharField(
        max_length=200,
        blank=True,
        validators=[validate_remote_url],
        help_text="Base URL of a remote member, e.g. http://gpu2:8080",
    )
    node = models.CharField(max_length=64, default="local", help_text="Which node's supervisor runs it")
    # Rows from before engines existed ran llama-cpp-python; new members get VIBEADMIN_ENGINE.
    engine = models.CharField(max_length=20, choices=states.ENGINE_CHOICES, default=states.LLAMA_CPP_PYTHON)
    # A remote member's key for its server; a local member's random key, new at each start,
    # so that only the gateway and the probes can reach its port.
    api_key = models.CharField(
        max_length=256,
        blank=True,
        validators=[RegexValidator(API_KEY_RE, "an API key is 1-256 printable characters, without spaces")],
    )

    # Desired state: what the operator wants. Only pool/services/members.py writes these (the
    # dashboard and the CLI call it).
    should_run = models.BooleanField(default=True)
    restart_requested = models.BooleanField(default=False)
    remove_requested = models.BooleanField(default=False)
    drain_timeout_s = models.FloatField(default=30.0)
    weight = models.PositiveIntegerField(default=1, validators=_weight_range())
    # The library model it serves (None: the pool's primary model, as before the library).
    model = models.ForeignKey(
        "pool.Model", null=True, blank=True, on_delete=models.PROTECT, related_name="members"
    )
    slots = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=_slots_range(),
        help_text="Answers it decodes at once; blank on a remote member: read from its /props",
    )
    # What the gateway sends it at once: the slots its process was started with, or a
    # remote's slots as set or read. The supervisor keeps it; tests and benches may set it.
    max_inflight = models.PositiveIntegerField(default=1)
    gpu = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0, "GPU index must be 0 or more")],
        help_text="Pins the process to one GPU",
    )
    n_gpu_layers = models.IntegerField(default=-1)
    n_ctx = models.PositiveIntegerField(default=4096, help_text="Context per slot, in tokens")
    n_threads = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1, "threads must be 1 or more")]
    )

    # Observed state: the supervisor writes these, through pool/services/member_state.py; so does a
    # gateway's passive check, which moves a ready member whose traffic fails to unhealthy.
    state = models.CharField(max_length=16, choices=states.CHOICES, default=states.STOPPED)
    state_changed_at = models.DateTimeField(default=timezone.now)
    pid = models.IntegerField(null=True, blank=True)
    host = models.CharField(max_length=255, default="127.0.0.1", help_text="Where its node reaches it")
    port = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    drain_deadline = models.DateTimeField(null=True, blank=True)
    next_start_at = models.DateTimeField(null=True, blank=True)
    restarts = models.PositiveIntegerField(default=0, help_text="Crashes since it was last stable")
    last_probe_at = models.DateTimeField(null=True, blank=True)
    last_probe_ok = models.BooleanField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0, help_text="Consecutive failed probes or requests")
    successes = models.PositiveIntegerField(default=0, help_text="Consecutive good probes")
    last_error = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = MemberQuerySet.as_manager()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    def unique_error_message(self, model_class, unique_check):
        if tuple(unique_check) == ("name",):
            return ValidationError(f"a member named {self.name!r} already exists", code="unique")
        return super().unique_error_message(model_class, unique_check)

    def clean(self) -> None:
        """The rules that join fields, or the pool's size (single fields check themselves)."""
        errors: dict[str, str] = {}
        if self.kind == states.REMOTE and not self.url:
            errors["url"] = "a remote member needs the URL of its server"
        if self.is_local and (self.slots or 1) > 1 and self.engine == states.LLAMA_CPP_PYTHON:
            errors["slots"] = (
                "a llama-cpp-python member generates one answer at a time: use the llama-server engine for more slots"
            )
        if self._state.adding and Member.objects.count() >= settings.VIBEADMIN_MAX_MEMBERS:
            errors["__all__"] = (
                f"the pool already has {settings.VIBEADMIN_MAX_MEMBERS} members (VIBEADMIN_MAX_MEMBERS)"
            )
        if errors:
            raise ValidationError(errors)

    @property
    def is_local(self) -> bool:
        return self.kind == states.LOCAL

    @property
    def wants_running(self) -> bool:
        return self.should_run and not self.remove_requested and not self.restart_requested

    @property
    def wish(self) -> str:
        """The operator's wish for the member, in one word: "remove", "restart", "run" or "stop"."""
        if self.remove_requested:
            return "remove"
        if self.restart_requested:
            return "restart"
        return "run" if self.should_run else "stop"

    def available_actions(self) -> list[str]:
        """The buttons (and CLI verbs) that make sense for the member in its state."""
        if self.remove_requested:
            return []
        if not self.should_run:
            return ["start", "stop", "remove"] if self.state == states.DRAINING else ["start", "remove"]
        if self.state == states.FAILED:
            return ["start", "remove"]
        if self.state == states.STOPPED:  # the supervisor starts it on its next tick
            return ["stop", "remove"]
        return ["drain", "stop", "restart", "remove"]

    def facts(self, *, node_lost: bool = False) -> dict:
        """What the CLI and the dashboard show of a member, before each formats it."""
        return {
            "name": self.name,
            "kind": self.kind,
            "node": self.node,
            "node_lost": node_lost,
            "wants": self.wish,
            "state": self.state,
            "pid": self.pid,
            "host": self.host if self.is_local else None,
            "port": self.port,
            "address": (f"{self.host}:{self.port}" if self.port else "") if self.is_local else self.url,
            "url": self.base_url or None,
            "engine": self.engine,
            "model": self.model.name if self.model_id else None,
            "slots": self.max_inflight,  # what the gateway routes by
            "slots_setting": self.slots,  # what the operator set (None: the server's own, or the default)
            "weight": self.weight,
            "gpu": self.gpu,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "state_changed_at": self.state_changed_at.isoformat(),
            "last_probe_at": self.last_probe_at.isoformat() if self.last_probe_at else None,
        }

    @property
    def base_url(self) -> str:
        """Where the gateway and the probes reach it, without a trailing slash or /v1."""
        if self.is_local:
            return f"http://{self.host}:{self.port}" if self.port else ""
        url = self.url.rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url

    @property
    def is_batching(self) -> bool:
        return self.engine == states.LLAMA_SERVER

    def wanted_slots(self) -> int | None:
        """The slots the operator asked for; None on a remote member left to its /props.
        A local llama-cpp-python server has one, whatever is set."""
        if self.is_local:
            return (self.slots or 1) if self.is_batching else 1
        return self.slots

    def uptime_s(self) -> float | None:
        if self.state in states.STOPPED_STATES or not self.started_at:
            return None
        return (timezone.now() - self.started_at).total_seconds()
