"""An eval run's answers as its process records them (observed state), each added to the
run's figures in the same step, so that the Quality page's progress is never behind."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from pool.models import EvalAnswer, EvalRun


@transaction.atomic
def record_answer(answer: EvalAnswer) -> int:
    """Keep one checked answer and add it to its run; returns how many the run has now."""
    answer.save()
    unanimous = answer.run.samples > 1 and answer.votes == answer.run.samples
    EvalRun.objects.filter(pk=answer.run_id).update(
        answered=F("answered") + 1,
        correct=F("correct") + answer.samples_correct,  # of answered x samples
        majority_correct=F("majority_correct") + int(answer.majority_correct),
        unanimous=F("unanimous") + int(unanimous),
        unanimous_correct=F("unanimous_correct") + int(unanimous and answer.majority_correct),
        completion_tokens=F("completion_tokens") + answer.completion_tokens,
        seconds=F("seconds") + answer.seconds,
    )
    return EvalRun.objects.values_list("answered", flat=True).get(pk=answer.run_id)
