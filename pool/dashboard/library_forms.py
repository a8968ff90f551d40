"""The Models page's forms: a GGUF added by its path on the host."""

from __future__ import annotations

from django import forms

from pool.dashboard.forms import ActionForm
from pool.models import Model
from pool.services.library import model_add


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
