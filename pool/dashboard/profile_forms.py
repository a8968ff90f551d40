"""The overview's profile panel: start a profile, apply its best layout, size a peak from it."""

from __future__ import annotations

from django import forms

from pool.profiling import job
from pool.profiling import plan as planning

TARGET_CHOICES = [
    (planning.ANSWERS, "most answers per minute"),
    (planning.TTFT, "lowest time to first token at a load"),
]


class ProfileStartForm(forms.Form):
    budget_s = forms.IntegerField(
        label="Budget (s)", min_value=60, max_value=3600, initial=int(job.DEFAULT_BUDGET_S)
    )


class ProfileApplyForm(forms.Form):
    target = forms.ChoiceField(choices=TARGET_CHOICES, initial=planning.ANSWERS)
    load = forms.IntegerField(
        label="Load (answers at once)", min_value=1, max_value=planning.LEVELS[-1], initial=8
    )


class ProfileCapacityForm(forms.Form):
    peak = forms.IntegerField(label="Peak (requests at once)", min_value=1, max_value=100_000, initial=50)
    answer_tokens = forms.IntegerField(
        label="Typical answer (tokens)", min_value=1, max_value=32_768, initial=planning.TYPICAL_ANSWER_TOKENS
    )
    within_s = forms.FloatField(label="Each answered within (s)", min_value=1, initial=120)
    spares = forms.IntegerField(min_value=0, max_value=10, initial=2)
