"""The dashboard's forms. Each validates what an operator typed and hands it to one
action; an action's own refusal (ActionError) comes back as a form error, nothing saved."""

from __future__ import annotations

from typing import Generic, TypeVar

from django import forms
from django.conf import settings

from pool import actions
from pool.apikeys import apikey_create
from pool.dashboard import alerts, autoscale
from pool.gateway.strategies import STRATEGIES
from pool.models import AlertRule, ApiKey, Member, PoolSettings, states
from pool.models.apikey import MAX_SHARE_WEIGHT, PRIORITIES
from pool.models.member import MAX_WEIGHT, MIN_WEIGHT

R = TypeVar("R")


class ActionForm(forms.Form, Generic[R]):
    """A form that hands its cleaned data to one action. `submit()` is False, with the
    action's message as a form error, where the action refuses; `result` is what it returned."""

    result: R  # set by a successful submit()

    def submit(self) -> bool:
        try:
            self.result = self.act()
        except (actions.ActionError, ValueError) as exc:
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
        max_value=actions.MAX_SLOTS,
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
                return actions.validate_remote_url(url)
            except actions.ActionError as exc:
                raise forms.ValidationError(str(exc)) from None
        return url

    def act(self) -> Member:
        data = self.cleaned_data
        # A remote server's engine is found by probing it, not chosen here.
        return actions.member_add(
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
        return actions.pool_scale(count=self.cleaned_data["count"])


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
                max_value=actions.MAX_SLOTS,
                help_text="Answers it decodes at once (llama-server); at next start",
            )
        else:
            self.fields["slots"] = forms.IntegerField(
                required=False,
                min_value=1,
                max_value=actions.MAX_SLOTS,
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
                actions.member_set_engine(member=member, engine=engine)
                member.refresh_from_db()
        if slots != member.slots:
            actions.member_set_slots(member=member, slots=slots)
        if data.get("api_key") or data.get("clear_api_key"):
            actions.member_set_api_key(
                member=member, api_key="" if data.get("clear_api_key") else data["api_key"]
            )
        if data["weight"] != member.weight:
            actions.member_set_weight(member=member, weight=data["weight"])
        if data["gpu"] != member.gpu:
            actions.member_set_gpu(member=member, gpu=data["gpu"])
        return member


def _weight(label: str) -> forms.IntegerField:
    return forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_SHARE_WEIGHT,
        label=label,
        widget=forms.NumberInput(attrs={"placeholder": "weight", "aria-label": label}),
    )


def _priority(label: str) -> forms.ChoiceField:
    return forms.ChoiceField(
        required=False, choices=PRIORITIES, label=label, widget=forms.Select(attrs={"aria-label": label})
    )


def _at_least_one(form: forms.ModelForm, name: str, message: str) -> int:
    """A count the pool needs at least one of (a queue place, a request, a token)."""
    value = form.cleaned_data[name]
    if value < 1:
        raise forms.ValidationError(message)
    return value


def _kept(form: forms.ModelForm, name: str):
    """A fair-sharing field a post left out keeps its value (older clients and scripts omit them)."""
    value = form.cleaned_data.get(name)
    return getattr(form.instance, name) if value in (None, "") else value


# The solve page's mode and hints mode's instructions: never blank.
TUTOR_TEXTS = ("solve_mode", "prompt_tutor", "hint_first", "hint_another", "hint_next_step", "hint_solution")


class RoutingForm(forms.ModelForm):
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
        for name in ("solve_max_turns", "solve_max_chars", *TUTOR_TEXTS):
            self.fields[name].required = False  # left out of a post (older scripts): kept

    def clean_solve_weight(self) -> int:
        return _kept(self, "solve_weight")

    def clean_solve_priority(self) -> str:
        return _kept(self, "solve_priority")

    def clean_queue_size(self) -> int:
        return _at_least_one(self, "queue_size", "the queue must hold at least one request")

    def clean_solve_rpm(self) -> int:
        return _at_least_one(self, "solve_rpm", "let each address send at least one problem a minute")

    def clean_solve_inflight_per_address(self) -> int:
        return _at_least_one(
            self, "solve_inflight_per_address", "let each address have at least one answer in flight"
        )

    def clean_solve_max_tokens(self) -> int:
        return _at_least_one(self, "solve_max_tokens", "let students ask for at least one token")

    def clean_solve_max_turns(self) -> int:
        self.cleaned_data["solve_max_turns"] = _kept(self, "solve_max_turns")
        return _at_least_one(self, "solve_max_turns", "let a conversation send at least its question")

    def clean_solve_max_chars(self) -> int:
        self.cleaned_data["solve_max_chars"] = _kept(self, "solve_max_chars")
        return _at_least_one(self, "solve_max_chars", "let a conversation send at least one character")

    def clean(self):
        data = super().clean()
        for name in TUTOR_TEXTS:
            data[name] = _kept(self, name)  # an instruction is never blank: empty keeps the last one
        return data

    def clean_solve_pool_share(self) -> float:
        value = self.cleaned_data["solve_pool_share"]
        if not 0 < value <= 1:
            raise forms.ValidationError("a share above 0 and at most 1 (the whole pool)")
        return value

    def clean_queue_timeout_s(self) -> float:
        value = self.cleaned_data["queue_timeout_s"]
        if not 0 < value <= 3600:
            raise forms.ValidationError("a deadline between 0 and 3600 seconds")
        return value

    def save(self, commit: bool = True) -> PoolSettings:
        row = super().save()
        if self.cleaned_data["strategy"] != row.strategy:
            actions.pool_set_strategy(name=self.cleaned_data["strategy"])  # records the change as an event
            row.refresh_from_db()
        return row


class KeyCreateForm(ActionForm[tuple[ApiKey, str]]):
    name = forms.CharField(max_length=100, help_text="The platform it is for")
    rpm = forms.IntegerField(required=False, min_value=1, label="Requests/min")
    tpm = forms.IntegerField(required=False, min_value=1, label="Tokens/min")
    max_parallel = forms.IntegerField(required=False, min_value=1, label="Parallel")
    weight = _weight("Weight")
    priority = _priority("Class")

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


class KeyLimitsForm(forms.ModelForm):
    rpm = _limit("requests/min")
    tpm = _limit("tokens/min")
    max_parallel = _limit("parallel")
    weight = _weight("weight")
    priority = _priority("class")

    class Meta:
        model = ApiKey
        fields = ["rpm", "tpm", "max_parallel", "weight", "priority"]

    def clean_weight(self) -> int:
        return _kept(self, "weight")

    def clean_priority(self) -> str:
        return _kept(self, "priority")


class AlertRuleForm(forms.ModelForm):
    metric = forms.ChoiceField(choices=list(alerts.METRICS.items()))

    class Meta:
        model = AlertRule
        fields = ["name", "metric", "comparison", "threshold", "duration_s", "severity", "enabled"]
        labels = {"duration_s": "For (seconds)"}


class WebhookForm(forms.ModelForm):
    alert_webhook_url = forms.URLField(
        required=False,
        assume_scheme="http",
        label="Webhook URL",
        help_text="Gets Alertmanager-style JSON on every firing and resolve; empty: none",
    )

    class Meta:
        model = PoolSettings
        fields = ["alert_webhook_url"]


class AutoscaleForm(forms.ModelForm):
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

    def clean_autoscale_target(self) -> float:
        value = self.cleaned_data["autoscale_target"]
        if value <= 0:
            raise forms.ValidationError("the target must be above 0")
        return value

    def clean(self):
        data = super().clean()
        low, high = data.get("autoscale_min"), data.get("autoscale_max")
        if low is not None and high is not None:
            if low > high:
                self.add_error("autoscale_max", "must be at least the fewest members")
            if high > settings.VIBEADMIN_MAX_MEMBERS:
                self.add_error(
                    "autoscale_max", f"at most {settings.VIBEADMIN_MAX_MEMBERS} (VIBEADMIN_MAX_MEMBERS)"
                )
        return data


class CapacityForm(forms.Form):
    target_qps = forms.FloatField(label="Target requests/s", min_value=0.01, initial=10)
    spares = forms.IntegerField(min_value=0, max_value=10, initial=2)
