"""The dashboard's forms. Each validates what an operator typed and hands it to one
action; an action's own refusal (ActionError) comes back as a form error, nothing saved."""

from __future__ import annotations

from typing import Generic, TypeVar

from django import forms
from django.conf import settings

from pool.loops import alerts, autoscale
from pool.models import AlertRule, ApiKey, Member, PoolSettings, states
from pool.models.apikey import MAX_SAMPLES, MAX_SHARE_WEIGHT, PRIORITIES
from pool.models.member import MAX_WEIGHT, MIN_WEIGHT
from pool.models.pool_settings import STRATEGIES, TASKS
from pool.services import ActionError, audit
from pool.services.keys import apikey_create
from pool.services.members import (
    MAX_SLOTS,
    member_add,
    member_set_api_key,
    member_set_engine,
    member_set_gpu,
    member_set_slots,
    member_set_weight,
    pool_scale,
    validate_remote_url,
)

SAMPLING_FIELDS = [f"{task}_{name}" for task in TASKS for name in ("temperature", "top_p", "max_tokens")]

R = TypeVar("R")


class ActionForm(forms.Form, Generic[R]):
    """A form that hands its cleaned data to one action. `submit()` is False, with the
    action's message as a form error, where the action refuses; `result` is what it returned."""

    result: R  # set by a successful submit()

    def submit(self) -> bool:
        try:
            self.result = self.act()
        except (ActionError, ValueError) as exc:
            self.add_error(None, str(exc))
            return False
        return True

    def act(self) -> R:
        raise NotImplementedError


class MemberAddForm(ActionForm[Member]):
    url = forms.CharField(
        required=False,
        label="Remote URL",
        max_length=200,
        help_text="Leave empty for a local process; or the base URL of a running llama.cpp server",
        widget=forms.TextInput(attrs={"placeholder": "http://gpu2:8080"}),
    )
    name = forms.CharField(required=False, max_length=64, help_text="Default: m1, m2, ...")
    engine = forms.ChoiceField(
        choices=states.ENGINE_CHOICES, required=False, help_text="What a local member runs"
    )
    slots = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_SLOTS,
        help_text="Answers it decodes at once (llama-server). Empty: the default for a local member, "
        "the server's own (from its /props) for a remote one",
    )
    api_key = forms.CharField(
        required=False,
        max_length=256,
        label="API key",
        widget=forms.PasswordInput,
        help_text="Only for a remote member whose server wants a key",
    )
    weight = forms.IntegerField(min_value=MIN_WEIGHT, max_value=MAX_WEIGHT, initial=1)
    gpu = forms.IntegerField(
        required=False, min_value=0, label="GPU", help_text="Pin a local member to a GPU index"
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["engine"].initial = settings.VIBEADMIN_ENGINE

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        if url:
            try:
                return validate_remote_url(url)
            except ActionError as exc:
                raise forms.ValidationError(str(exc)) from None
        return url

    def act(self) -> Member:
        data = self.cleaned_data
        # A remote server's engine is found by probing it, not chosen here.
        return member_add(
            url=data["url"],
            weight=data["weight"],
            gpu=data["gpu"],
            name=data["name"].strip(),
            engine="" if data["url"] else data["engine"],
            slots=data["slots"],
            api_key=data["api_key"],
        )


class ScaleForm(ActionForm[list[str]]):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        limit = settings.VIBEADMIN_MAX_MEMBERS
        self.fields["count"] = forms.IntegerField(
            label="Members",
            min_value=0,
            max_value=limit,
            help_text=f"Local members that should run (0 to {limit})",
            error_messages={"max_value": "at most %(limit_value)s members (VIBEADMIN_MAX_MEMBERS)"},
        )

    def act(self) -> list[str]:
        return pool_scale(count=self.cleaned_data["count"])


class MemberEditForm(ActionForm[Member]):
    weight = forms.IntegerField(min_value=MIN_WEIGHT, max_value=MAX_WEIGHT)
    gpu = forms.IntegerField(required=False, min_value=0, label="GPU pin", help_text="Empty: no pin")

    def __init__(self, *args, member: Member, **kwargs):
        kwargs.setdefault(
            "initial",
            {"weight": member.weight, "gpu": member.gpu, "slots": member.slots, "engine": member.engine},
        )
        super().__init__(*args, **kwargs)
        self.member = member
        if member.is_local:  # left out of a post: unchanged
            self.fields["engine"] = forms.ChoiceField(
                choices=states.ENGINE_CHOICES, required=False, help_text="At next start"
            )
            self.fields["slots"] = forms.IntegerField(
                required=False,
                min_value=1,
                max_value=MAX_SLOTS,
                help_text="Answers it decodes at once (llama-server); at next start",
            )
        else:
            self.fields["slots"] = forms.IntegerField(
                required=False,
                min_value=1,
                max_value=MAX_SLOTS,
                help_text="Empty: read from the server's /props",
            )
            self.fields["api_key"] = forms.CharField(
                required=False,
                max_length=256,
                label="API key",
                widget=forms.PasswordInput,
                help_text="Leave empty to keep the current key" + ("" if member.api_key else " (none set)"),
            )
            self.fields["clear_api_key"] = forms.BooleanField(required=False, label="Remove the API key")

    def act(self) -> Member:
        data, member = self.cleaned_data, self.member
        slots = data["slots"]
        if member.is_local:
            engine = data["engine"] or member.engine
            slots = 1 if engine == states.LLAMA_CPP_PYTHON else (slots or member.slots)
            if engine != member.engine:
                member_set_engine(member=member, engine=engine)
                member.refresh_from_db()
        if slots != member.slots:
            member_set_slots(member=member, slots=slots)
        if data.get("api_key") or data.get("clear_api_key"):
            member_set_api_key(member=member, api_key="" if data.get("clear_api_key") else data["api_key"])
        if data["weight"] != member.weight:
            member_set_weight(member=member, weight=data["weight"])
        if data["gpu"] != member.gpu:
            member_set_gpu(member=member, gpu=data["gpu"])
        return member


def _weight(label: str) -> forms.IntegerField:
    return forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_SHARE_WEIGHT,
        label=label,
        widget=forms.NumberInput(attrs={"placeholder": "weight", "aria-label": label}),
    )


def _samples(label: str) -> forms.IntegerField:
    return forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_SAMPLES,
        label=label,
        help_text="Independent answers per math problem; the majority's final answer is shown (1: no vote)",
        widget=forms.NumberInput(attrs={"placeholder": "samples", "aria-label": label}),
    )


def _priority(label: str) -> forms.ChoiceField:
    return forms.ChoiceField(
        required=False, choices=PRIORITIES, label=label, widget=forms.Select(attrs={"aria-label": label})
    )


def _kept(form: forms.ModelForm, name: str):
    """A fair-sharing field a post left out keeps its value (older clients and scripts omit them)."""
    value = form.cleaned_data.get(name)
    return getattr(form.instance, name) if value in (None, "") else value


# The solve page's mode and hints mode's instructions: never blank.
TUTOR_TEXTS = ("solve_mode", "prompt_tutor", "hint_first", "hint_another", "hint_next_step", "hint_solution")


class DesiredStateForm(forms.ModelForm):
    """A form over a table of desired state (settings, keys, rules): the model's rules check
    it (`full_clean`), and it is saved through the service layer, which records each change
    with who made it (pool/services/audit.py)."""

    def save(self, commit: bool = True):
        # Only what the form shows is written: the rest of the row may change meanwhile.
        return audit.save(self.instance, fields=list(self.cleaned_data))


class RoutingForm(DesiredStateForm):
    strategy = forms.ChoiceField(choices=[(name, name.replace("_", " ")) for name in STRATEGIES])
    solve_weight = _weight("Solve page: weight")
    solve_priority = _priority("Solve page: class")

    class Meta:
        model = PoolSettings
        fields = [
            "queue_size",
            "queue_timeout_s",
            "prompt_general",
            "prompt_math",
            "prompt_code",
            "language_hint_enabled",
            "language_hint",
            "api_open",
            "solve_rpm",
            "solve_inflight_per_address",
            "solve_max_tokens",
            "solve_pool_share",
            "solve_weight",
            "solve_priority",
            *SAMPLING_FIELDS,
            "solve_mode",
            "solve_max_turns",
            "solve_max_chars",
            "prompt_tutor",
            "hint_first",
            "hint_another",
            "hint_next_step",
            "hint_solution",
        ]
        labels = {
            "queue_size": "Queue size",
            "queue_timeout_s": "Queue deadline (s)",
            "prompt_general": "System prompt: general",
            "prompt_math": "System prompt: math",
            "prompt_code": "System prompt: code",
            "language_hint_enabled": "Add the language hint",
            "language_hint": "Language hint",
            "api_open": "Serve /v1/ without an API key",
            "solve_rpm": "Solve page: problems per minute per address",
            "solve_inflight_per_address": "Answers in flight per address",
            "solve_max_tokens": "Longest answer (tokens)",
            "solve_pool_share": "Share of the pool's slots for students (0-1)",
            **{f"{task}_temperature": f"{task.capitalize()}: temperature" for task in TASKS},
            **{f"{task}_top_p": f"{task.capitalize()}: top_p" for task in TASKS},
            **{f"{task}_max_tokens": f"{task.capitalize()}: max_tokens" for task in TASKS},
            "solve_mode": "The solve page gives",
            "solve_max_turns": "Questions per conversation sent",
            "solve_max_chars": "Characters per conversation sent",
            "prompt_tutor": "System prompt: hints mode",
            "hint_first": "Hints mode: added to the problem",
            "hint_another": "Button “Another hint”",
            "hint_next_step": "Button “Next step”",
            "hint_solution": "Button “Full solution”",
        }
        widgets = {
            name: forms.Textarea(attrs={"rows": 2})
            for name in (
                "prompt_general",
                "prompt_math",
                "prompt_code",
                "language_hint",
                "prompt_tutor",
                "hint_first",
                "hint_another",
                "hint_next_step",
                "hint_solution",
            )
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["strategy"].initial = self.instance.strategy
        self.order_fields(["strategy"])
        for task in TASKS:  # left out of a post (older scripts): unchanged, as clean() keeps them
            self.fields[f"{task}_temperature"].required = False
            self.fields[f"{task}_top_p"].required = False
        for name in ("solve_max_turns", "solve_max_chars", *TUTOR_TEXTS):
            self.fields[name].required = False  # left out of a post (older scripts): kept

    def clean_solve_weight(self) -> int:
        return _kept(self, "solve_weight")

    def clean_solve_priority(self) -> str:
        return _kept(self, "solve_priority")

    @property
    def sampling_rows(self) -> list[list[forms.BoundField]]:
        return [[self[f"{task}_{name}"] for name in ("temperature", "top_p", "max_tokens")] for task in TASKS]

    @property
    def default_max_tokens(self) -> int:
        return settings.VIBEADMIN_DEFAULT_MAX_TOKENS

    def clean(self):
        data = super().clean()
        # Left out of a post (older scripts) or blank: kept; an instruction is never blank.
        # The bounds themselves are PoolSettings.clean()'s, shared with the command line.
        for task in TASKS:
            for name in (f"{task}_temperature", f"{task}_top_p"):
                if name in data:
                    data[name] = _kept(self, name)
        for name in ("solve_max_turns", "solve_max_chars", *TUTOR_TEXTS):
            data[name] = _kept(self, name)
        return data

    def save(self, commit: bool = True) -> PoolSettings:
        self.instance.strategy = self.cleaned_data["strategy"]
        return super().save()


class KeyCreateForm(ActionForm[tuple[ApiKey, str]]):
    name = forms.CharField(max_length=100, help_text="The platform it is for")
    rpm = forms.IntegerField(required=False, min_value=1, label="Requests/min")
    tpm = forms.IntegerField(required=False, min_value=1, label="Tokens/min")
    max_parallel = forms.IntegerField(required=False, min_value=1, label="Parallel")
    weight = _weight("Weight")
    priority = _priority("Class")
    tokens_per_day = forms.IntegerField(required=False, min_value=1, label="Tokens/day")
    tokens_per_month = forms.IntegerField(required=False, min_value=1, label="Tokens/month")
    cache = forms.BooleanField(required=False, label="Answer cache")
    cache_sampled = forms.BooleanField(required=False, label="… also sampled")

    def clean(self) -> dict:
        return _quotas_in_order(self, "tokens_per_day", "tokens_per_month")

    def act(self) -> tuple[ApiKey, str]:
        data = self.cleaned_data
        return apikey_create(
            **{**data, "weight": data["weight"] or 1, "priority": data["priority"] or "interactive"}
        )


def _limit(label: str) -> forms.IntegerField:
    return forms.IntegerField(
        required=False,
        min_value=1,
        label=label,
        widget=forms.NumberInput(attrs={"placeholder": label, "aria-label": label}),
    )


def _quotas_in_order(form: forms.Form, per_day: str, per_month: str) -> dict:
    data = form.cleaned_data
    if data.get(per_day) and data.get(per_month) and data[per_day] > data[per_month]:
        form.add_error(per_day, "a day's quota above the month's could never be used")
    return data


class KeyLimitsForm(DesiredStateForm):
    rpm = _limit("requests/min")
    tpm = _limit("tokens/min")
    max_parallel = _limit("parallel")
    weight = _weight("weight")
    priority = _priority("class")
    tokens_per_day = _limit("tokens/day")
    tokens_per_month = _limit("tokens/month")
    samples = _samples("samples")

    class Meta:
        model = ApiKey
        fields = [
            "rpm",
            "tpm",
            "max_parallel",
            "weight",
            "priority",
            "tokens_per_day",
            "tokens_per_month",
            "cache",
            "cache_sampled",
            "samples",
        ]
        labels = {"cache": "cache", "cache_sampled": "sampled"}

    def clean(self) -> dict:
        return _quotas_in_order(self, "tokens_per_day", "tokens_per_month")

    def clean_weight(self) -> int:
        return _kept(self, "weight")

    def clean_priority(self) -> str:
        return _kept(self, "priority")

    def clean_samples(self) -> int:
        return _kept(self, "samples")


class AlertRuleForm(DesiredStateForm):
    metric = forms.ChoiceField(choices=list(alerts.METRICS.items()))

    class Meta:
        model = AlertRule
        fields = ["name", "metric", "comparison", "threshold", "duration_s", "severity", "enabled"]
        labels = {"duration_s": "For (seconds)"}


class WebhookForm(DesiredStateForm):
    alert_webhook_url = forms.URLField(
        required=False,
        assume_scheme="http",
        label="Webhook URL",
        help_text="Gets Alertmanager-style JSON on every firing and resolve; empty: none",
    )

    class Meta:
        model = PoolSettings
        fields = ["alert_webhook_url"]


class AutoscaleForm(DesiredStateForm):
    autoscale_metric = forms.ChoiceField(choices=autoscale.TARGETS, label="Scale on")

    class Meta:
        model = PoolSettings
        fields = [
            "autoscale_enabled",
            "autoscale_min",
            "autoscale_max",
            "autoscale_metric",
            "autoscale_target",
            "autoscale_cooldown_s",
        ]
        labels = {
            "autoscale_enabled": "Autoscaling on",
            "autoscale_min": "Fewest members",
            "autoscale_max": "Most members",
            "autoscale_target": "Target",
            "autoscale_cooldown_s": "Cooldown (s)",
        }


class CapacityForm(forms.Form):
    target_qps = forms.FloatField(label="Target requests/s", min_value=0.01, initial=10)
    spares = forms.IntegerField(min_value=0, max_value=10, initial=2)


class AuditFilterForm(forms.Form):
    """The Audit page's filters; each left empty matches everything."""

    member = forms.ChoiceField(required=False)
    setting = forms.ChoiceField(required=False)
    actor = forms.ChoiceField(required=False, label="Who")
    since = forms.DateTimeField(
        required=False, label="From", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = forms.DateTimeField(
        required=False, label="To", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )

    def __init__(self, *args, changes, **kwargs):
        super().__init__(*args, **kwargs)
        for name, column in (("member", "member_name"), ("setting", "setting"), ("actor", "actor")):
            seen = changes.exclude(**{column: ""}).values_list(column, flat=True).distinct().order_by(column)
            self.fields[name].choices = [("", "any"), *((value, value) for value in seen)]  # type: ignore[attr-defined]

    def filtered(self, changes):
        data = self.cleaned_data
        if data["member"]:
            changes = changes.filter(member_name=data["member"])
        if data["setting"]:
            changes = changes.filter(setting=data["setting"])
        if data["actor"]:
            changes = changes.filter(actor=data["actor"])
        if data["since"]:
            changes = changes.filter(created_at__gte=data["since"])
        if data["until"]:
            changes = changes.filter(created_at__lte=data["until"])
        return changes


class SolveCacheQuotaForm(DesiredStateForm):
    """The solve page's answer cache, votes and quotas (Routing page): the students as one tenant."""

    solve_samples = _samples("Independent answers per math problem (students)")
    max_samples = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_SAMPLES,
        label="Most answers one request may ask for (vibeadmin.samples)",
    )

    solve_tokens_per_day = forms.IntegerField(
        required=False, min_value=1, label="Tokens per day (all students)"
    )
    solve_tokens_per_month = forms.IntegerField(
        required=False, min_value=1, label="Tokens per month (all students)"
    )

    class Meta:
        model = PoolSettings
        fields = [
            "solve_cache",
            "solve_cache_sampled",
            "solve_tokens_per_day",
            "solve_tokens_per_month",
            "solve_samples",
            "max_samples",
        ]
        labels = {
            "solve_cache": "Answer repeated problems from the answer cache",
            "solve_cache_sampled": "Also when the answer is sampled (temperature above 0)",
        }

    def clean(self) -> dict:
        return _quotas_in_order(self, "solve_tokens_per_day", "solve_tokens_per_month")

    def clean_solve_samples(self) -> int:
        return _kept(self, "solve_samples")

    def clean_max_samples(self) -> int:
        return _kept(self, "max_samples")
