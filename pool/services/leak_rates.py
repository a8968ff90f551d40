"""The hints mode's leak rate as measured (observed state): a `bench.leak_rate` result
stored as rows, one per mode, for the Quality page."""

from __future__ import annotations

from datetime import datetime

from pool.models import LeakRate


def record_leak_rates(measured: dict) -> list[LeakRate]:
    """The modes of one `bench/results/leak_rate*.json` (a wording tried and not kept,
    `*_rejected`, left out); loading the same file again changes nothing."""
    when = datetime.fromisoformat(str(measured["when"]))
    rows = []
    for mode, figures in measured["modes"].items():
        if mode.endswith("_rejected"):
            continue
        row, _ = LeakRate.objects.update_or_create(
            mode=mode,
            max_tokens=int(measured["max_tokens"]),
            model=str(measured["model"]),
            measured_at=when,
            defaults={"leaks": int(figures["leaks"]), "problems": int(measured["problems"])},
        )
        rows.append(row)
    return rows
