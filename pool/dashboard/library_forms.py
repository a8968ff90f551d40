"""The Models page's forms: a GGUF added by its path on the host; a rollout started."""

from __future__ import annotations

from django import forms

from pool.dashboard.forms import ActionForm
from pool.models import ApiKey, Model, Rollout
from pool.services.library import model_add
from pool.services.rollouts import rollout_start


class ModelAddForm(ActionForm[Model]):
    path = forms.CharField(
        max_length=1024,
        label="Path on the host",
        help_text="The GGUF file's absolute path where the members run; it is read and checked now",
        widget=forms.TextInput(attrs={"placeholder": "/srv/models/VibeThinker-1.5B.Q8_0.gguf"}),
    )
    name = forms.CharField(required=False, max_length=64, help_text="Default: from the file's name")
    alias = forms.CharField(required=False, max_length=64, help_text="Another name clients may send")
    chat_format = forms.CharField(
        required=False, max_length=32, help_text="A built-in chat template (gemma) where the file has none"
    )

    def act(self) -> Model:
        data = self.cleaned_data
        return model_add(
            path=data["path"].strip(),
            name=data["name"].strip(),
            alias=data["alias"].strip(),
            chat_format=data["chat_format"].strip(),
        )


class RolloutForm(ActionForm[Rollout]):
    target = forms.ModelChoiceField(queryset=Model.objects.all(), to_field_name="name", label="Roll out")
    canary = forms.FloatField(
        required=False,
        min_value=0,
        max_value=100,
        label="Canary %",
        help_text="Empty: replace every member, one at a time. A share: a canary first, with that share of the primary alias's traffic",
    )
    gate = forms.BooleanField(
        required=False, help_text="The accuracy check promotes or rolls the canary back by itself"
    )
    tenant = forms.ModelChoiceField(
        queryset=ApiKey.objects.filter(revoked_at__isnull=True),
        required=False,
        to_field_name="name",
        help_text="The canary takes only this key's requests",
    )

    def act(self) -> Rollout:
        data = self.cleaned_data
        return rollout_start(
            target=data["target"],
            canary_percent=data["canary"] or 0.0,
            gate=data["gate"],
            tenant=data["tenant"],
        )
