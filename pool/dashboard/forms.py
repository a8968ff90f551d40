"""The dashboard's forms. Each validates what an operator typed and hands it to one
action; an action's own refusal (ActionError) comes back as a form error, nothing saved."""

from __future__ import annotations

from typing import Generic, TypeVar

from django import forms
from django.conf import settings

from pool.loops import autoscale
from pool.models import AlertRule, ApiKey, Member, Model, PoolSettings, roles, states
from pool.models.alerts import METRICS
from pool.models.apikey import MAX_SAMPLES, MAX_SHARE_WEIGHT, PRIORITIES
from pool.models.member import MAX_SLOTS, MAX_WEIGHT, MIN_WEIGHT
from pool.models.pool_settings import STRATEGIES, TASKS
from pool.services import ActionError, audit
from pool.services.keys import apikey_create
from pool.services.members import (
    member_add,
    member_set_api_key,
    member_set_engine,
    member_set_gpu,
    member_set_model,
    member_set_slots,
    member_set_weight,
    pool_scale,
)
from pool.services.users import user_create

SAMPLING_FIELDS = [f"{task}_{name}" for task in TASKS for name in ("temperature", "top_p", "max_tokens")]

R = TypeVar("R")


class ActionForm(forms.Form, Generic[R]):
    """A form that hands its cleaned data to one action. `submit()` is False, with the
    action's message as a form error, where the action refuses; `result` is what it returned."""

    result: R  # set by a successful submit()

    def submit(self) -> bool:
        try:
            self.result = self.act()
        except ActionError as exc:
            for name, messages in exc.fields.items() or [(None, [str(exc)])]:
                self.add_error(name if name in self.fields else None, messages)
            return False
        except ValueError as exc:
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
    model = forms.ModelChoiceField(
        queryset=Model.objects.all(),
        required=False,
        to_field_name="name",
        help_text="The library model it serves. Empty: the primary model",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["engine"].initial = settings.VIBEADMIN_ENGINE

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
            model=data["model"],
        )


class ScaleForm(ActionForm[list[str]]):
    model = forms.ModelChoiceField(
        queryset=Model.objects.all(),
        required=False,
        to_field_name="name",
        help_text="Count (and add) only members of this model. Empty: every local member",
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "scale_%s")  # the add form on the same page has a model field too
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
        return pool_scale(count=self.cleaned_data["count"], model=self.cleaned_data.get("model"))


class MemberEditForm(ActionForm[Member]):
    weight = forms.IntegerField(min_value=MIN_WEIGHT, max_value=MAX_WEIGHT)
    gpu = forms.IntegerField(required=False, min_value=0, label="GPU pin", help_text="Empty: no pin")

    def __init__(self, *args, member: Member, **kwargs):
        kwargs.setdefault(
            "initial",
            {
                "weight": member.weight,
                "gpu": member.gpu,
                "slots": member.slots,
                "engine": member.engine,
                "model": member.model.name if member.model_id else None,
            },
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
            self.fields["model"] = forms.ModelChoiceField(
                queryset=Model.objects.all(),
                required=False,
                to_field_name="name",
                help_text="The library model it serves; at next start (a rollout moves the pool without a gap)",
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
            if data.get("model") is not None and data["model"].pk != member.model_id:
                member_set_model(member=member, model=data["model"])
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

    def apply(self):
        """Save what the form shows (only that: the rest of the row may change meanwhile)."""
        return audit.save_row(self.instance, fields=list(self.cleaned_data))

    def changes(self, before) -> list[str]:
        """What a save changed against the row as it was, as a page says it: "Queue size
        100 → 50" (a long text only "changed")."""
        said = []
        for name, field in self.fields.items():
            old, new = getattr(before, name), getattr(self.instance, name)
            if old != new:
                long_text = isinstance(field.widget, forms.Textarea)
                shown = "changed" if long_text else f"{_shown(old)} → {_shown(new)}"
                said.append(f"{self[name].label} {shown}")
        return said


# The Routing page's sections, in page order: (heading, one line on what it decides, fields).
# Each is a form of its own with its own save; the sampling defaults show as one table.
ROUTING_SECTIONS: dict[str, tuple[str, str, list[str]]] = {
    "strategy": (
        "Strategy",
        "How the gateway picks a member for each request.",
        ["strategy"],
    ),
    "line": (
        "The line",
        "Requests wait in order when every member is busy; a full line answers 429, a passed deadline "
        "503, both with Retry-After.",
        ["queue_size", "queue_timeout_s"],
    ),
    "prompts": (
        "What the model is told",
        "The system prompt per task, unless the caller sent its own, and the language hint.",
        ["prompt_general", "prompt_math", "prompt_code", "language_hint_enabled", "language_hint"],
    ),
    "sampling": (
        "Sampling defaults per task",
        "Used where a request sends no value of its own; a client's own value wins, within "
        "VIBEADMIN_MAX_TOKENS and the solve page's longest answer. Started from VibeThinker-1.5B's card "
        "(temperature 0.6, top_p 0.95).",
        SAMPLING_FIELDS,
    ),
    "access": ("Access", "Who may call /v1/. The solve page never needs a key.", ["api_open"]),
    "students": (
        "The solve page's limits",
        "Students are limited per address instead of per key, and all together to a share of the "
        "pool, so platforms always keep the rest; beyond a cap a student sees why and when to try again.",
        [
            "solve_rpm",
            "solve_inflight_per_address",
            "solve_max_tokens",
            "solve_pool_share",
            "solve_weight",
            "solve_priority",
        ],
    ),
    "tutor": (
        "The tutor",
        "Follow-up questions and hints mode: the first reply a hint toward the next step, and three "
        'buttons that send these instructions. Platforms ask for the same with "vibeadmin": {"mode": "hints"}.',
        [
            "solve_mode",
            "solve_max_turns",
            "solve_max_chars",
            "prompt_tutor",
            "hint_first",
            "hint_another",
            "hint_next_step",
            "hint_solution",
        ],
    ),
}
LONG_TEXTS = (
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


class RoutingForm(DesiredStateForm):
    """The Routing page's settings; with `section`, only that section's fields (the page saves
    one section at a time; a post of every field, as older scripts send, saves them all)."""

    strategy = forms.ChoiceField(
        choices=[(name, name.replace("_", " ")) for name in STRATEGIES],
        help_text="least connections counts each member's requests; least work adds up their "
        "max_tokens, for answers of very different lengths; weighted round robin follows the "
        "members' weights; ip hash keeps a client on one member; power of two and peak EWMA "
        "weigh load and latency",
    )
    solve_weight = _weight("Weight in the fair line")
    solve_priority = _priority("Class in the fair line")

    class Meta:
        model = PoolSettings
        fields = [name for _, _, names in ROUTING_SECTIONS.values() for name in names if name != "strategy"]
        labels = {
            "queue_size": "Queue size",
            "queue_timeout_s": "Queue deadline (s)",
            "prompt_general": "System prompt: general",
            "prompt_math": "System prompt: math",
            "prompt_code": "System prompt: code",
            "language_hint_enabled": "Add the language hint",
            "language_hint": "Language hint",
            "api_open": "Serve /v1/ without an API key",
            "solve_rpm": "Problems per minute per address",
            "solve_inflight_per_address": "Answers in flight per address",
            "solve_max_tokens": "Longest answer (tokens)",
            "solve_pool_share": "Students' share of the pool (0-1)",
            **{f"{task}_temperature": f"{task.capitalize()}: temperature" for task in TASKS},
            **{f"{task}_top_p": f"{task.capitalize()}: top_p" for task in TASKS},
            **{f"{task}_max_tokens": f"{task.capitalize()}: max_tokens" for task in TASKS},
            "solve_mode": "The solve page gives",
            "solve_max_turns": "Questions per conversation sent",
            "solve_max_chars": "Characters per conversation sent",
            "prompt_tutor": "System prompt: hints mode",
            "hint_first": "Added to the problem",
            "hint_another": "Button “Another hint”",
            "hint_next_step": "Button “Next step”",
            "hint_solution": "Button “Full solution”",
        }
        help_texts = {
            "queue_size": "Requests that may wait at once, across every tenant",
            "queue_timeout_s": "The longest a request waits for a member before its 503",
            "prompt_general": "For requests of no task, or task general",
            "prompt_math": "For task math (the solve page's math problems too)",
            "prompt_code": "For task code",
            "language_hint_enabled": "Only prompts written mainly in Chinese get it",
            "language_hint": "Added to those prompts; a caller's own system prompt is kept",
            "api_open": "Off: every /v1/ request needs an API key",
            "solve_rpm": "Problems one address may send per minute",
            "solve_inflight_per_address": "Answers one address may wait for at once",
            "solve_max_tokens": "The longest answer a student may ask for",
            "solve_pool_share": "Of the ready members' slots, what students may hold at once",
            "solve_weight": "The solve page's share of a full pool against each key's weight",
            "solve_priority": "batch only gets slots no interactive request waits for",
            "solve_mode": "Hints mode answers with a hint first; the student asks for more",
            "solve_max_turns": "Older questions are left out, and the page says so",
            "solve_max_chars": "Older turns are left out beyond this",
            "prompt_tutor": "Hints mode's system prompt, in place of the task's",
            "hint_first": "Hints mode: the instruction added to the student's problem",
            "hint_another": "Sent as the student's turn when the button is pressed",
            "hint_next_step": "Sent as the student's turn when the button is pressed",
            "hint_solution": "Sent as the student's turn when the button is pressed",
        }
        widgets = {name: forms.Textarea(attrs={"rows": 3}) for name in LONG_TEXTS}

    def __init__(self, *args, section: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["strategy"].initial = self.instance.strategy
        self.order_fields(["strategy"])
        for task in TASKS:  # left out of a post (older scripts): unchanged, as clean() keeps them
            self.fields[f"{task}_temperature"].required = False
            self.fields[f"{task}_top_p"].required = False
        for name in ("solve_max_turns", "solve_max_chars", *TUTOR_TEXTS):
            self.fields[name].required = False  # left out of a post (older scripts): kept
        for name in ("solve_weight", "solve_priority"):  # declared here, so Meta's help is not theirs
            self.fields[name].help_text = self.Meta.help_texts[name]
        for name in SAMPLING_FIELDS:  # shown as one table, with one help text under it
            self.fields[name].widget.attrs["aria-describedby"] = "sampling-help"
        self.section = section
        if section is not None:
            shown = set(ROUTING_SECTIONS[section][2])
            for name in [name for name in self.fields if name not in shown]:
                del self.fields[name]

    def clean_solve_weight(self) -> int:
        return _kept(self, "solve_weight")

    def clean_solve_priority(self) -> str:
        return _kept(self, "solve_priority")

    @property
    def sampling_rows(self) -> list[tuple[str, list[forms.BoundField]]]:
        return [
            (task, [self[f"{task}_{name}"] for name in ("temperature", "top_p", "max_tokens")])
            for task in TASKS
        ]

    @property
    def default_max_tokens(self) -> int:
        return settings.VIBEADMIN_DEFAULT_MAX_TOKENS

    def clean(self):
        data = super().clean()
        # Left out of a post (older scripts) or blank: kept; an instruction is never blank.
        # The bounds themselves are PoolSettings.clean()'s, shared with the command line.
        kept = [f"{task}_{name}" for task in TASKS for name in ("temperature", "top_p")]
        for name in (*kept, "solve_max_turns", "solve_max_chars", *TUTOR_TEXTS):
            if name in self.fields and name in data:
                data[name] = _kept(self, name)
        return data

    def apply(self) -> PoolSettings:
        if "strategy" in self.cleaned_data:
            self.instance.strategy = self.cleaned_data["strategy"]
        return super().apply()


def _shown(value) -> str:
    if value is None or value == "":
        return "default"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value).replace("_", " ")


# The API keys page's help beside each field (the same words for a new key and a key's limits).
KEY_HELP = {
    "rpm": "Requests a minute; empty: no limit",
    "tpm": "Prompt and answer tokens a minute; empty: no limit",
    "max_parallel": "Requests in flight at once; empty: no limit",
    "weight": "Its share of a full pool: weight 2 gets twice the tokens of weight 1",
    "priority": "batch only gets slots no interactive request waits for",
    "tokens_per_day": "Per calendar day; the webhook is told at 80%, at 100% a 429 until the reset",
    "tokens_per_month": "Per calendar month, the same way",
    "cache": "Answer its repeated requests from stored answers",
    "cache_sampled": "Also requests with temperature above 0 (a stored answer is one sample)",
    "samples": "Independent answers per math problem; the majority's is returned (1: no vote)",
    "user_rpm": "Each student's requests a minute, inside the key's",
    "user_parallel": "Each student's requests in flight at once",
    "user_tokens_per_day": "Each student's tokens per calendar day",
    "user_tokens_per_month": "Each student's tokens per calendar month",
}


def labelled(form: forms.BaseForm) -> None:
    """Fields shown as rows with their label and help beside them: no placeholder (cut off in a
    small box) and no aria-label (the visible label names the field)."""
    for name, field in form.fields.items():
        field.widget.attrs.pop("placeholder", None)
        field.widget.attrs.pop("aria-label", None)
        field.help_text = KEY_HELP.get(name, field.help_text)


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
    user_rpm = forms.IntegerField(required=False, min_value=1, label="Per student: requests/min")
    user_parallel = forms.IntegerField(required=False, min_value=1, label="Per student: parallel")
    user_tokens_per_day = forms.IntegerField(required=False, min_value=1, label="Per student: tokens/day")
    user_tokens_per_month = forms.IntegerField(required=False, min_value=1, label="Per student: tokens/month")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        labelled(self)

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


class KeyLimitsForm(DesiredStateForm):
    rpm = _limit("Requests/min")
    tpm = _limit("Tokens/min")
    max_parallel = _limit("Parallel")
    weight = _weight("Weight")
    priority = _priority("Class")
    tokens_per_day = _limit("Tokens/day")
    tokens_per_month = _limit("Tokens/month")
    samples = _samples("Answers per math problem")

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
        labels = {"cache": "Answer cache", "cache_sampled": "… also sampled"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        labelled(self)
        self.auto_id = f"id_key{self.instance.pk}_%s"  # one form per key on the page: ids apart

    def clean_weight(self) -> int:
        return _kept(self, "weight")

    def clean_priority(self) -> str:
        return _kept(self, "priority")

    def clean_samples(self) -> int:
        return _kept(self, "samples")


class StudentLimitsForm(DesiredStateForm):
    """A key's limits for each of its students (a student is named by the request's `user`)."""

    user_rpm = _limit("requests/min")
    user_parallel = _limit("parallel")
    user_tokens_per_day = _limit("tokens/day")
    user_tokens_per_month = _limit("tokens/month")

    class Meta:
        model = ApiKey
        fields = ["user_rpm", "user_parallel", "user_tokens_per_day", "user_tokens_per_month"]


class AlertRuleForm(DesiredStateForm):
    metric = forms.ChoiceField(choices=list(METRICS.items()))

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


class UserCreateForm(ActionForm[tuple]):
    name = forms.CharField(max_length=150, label="User name")
    role = forms.ChoiceField(choices=roles.ROLE_CHOICES, initial=roles.VIEWER)

    def act(self) -> tuple:
        return user_create(name=self.cleaned_data["name"], role=self.cleaned_data["role"])


class UserRoleForm(forms.Form):
    role = forms.ChoiceField(choices=[*roles.ROLE_CHOICES, (roles.NO_ROLE, "none: may not log in")])

    def __init__(self, *args, user, **kwargs):
        kwargs.setdefault("initial", {"role": roles.role_of(user)})
        super().__init__(*args, **kwargs)
        self.fields["role"].label = f"Role of {user.get_username()}"


class SolveCacheQuotaForm(DesiredStateForm):
    """The solve page's answer cache, votes and quotas (Routing page): the students as one tenant."""

    solve_samples = _samples("Independent answers per math problem (students)")
    max_samples = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_SAMPLES,
        label="Most answers one request may ask for (vibeadmin.samples)",
        help_text="Platforms too; every answer's tokens count against the quota",
    )

    solve_tokens_per_day = forms.IntegerField(
        required=False,
        min_value=1,
        label="Tokens per day (all students)",
        help_text="At 100% students see when it resets; empty: none",
    )
    solve_tokens_per_month = forms.IntegerField(
        required=False,
        min_value=1,
        label="Tokens per month (all students)",
        help_text="The alert webhook is told at 80%; empty: none",
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

    def clean_solve_samples(self) -> int:
        return _kept(self, "solve_samples")

    def clean_max_samples(self) -> int:
        return _kept(self, "max_samples")
