"""Figures over interleaved rounds: a figure is the median of its rounds, shown with the
range it came from, and a comparison is made round by round (each round's legs ran side
by side, under the same load from the rest of the machine)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable


def spread(values: Iterable[float]) -> dict:
    """The median of the rounds' values and their range."""
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "low": ordered[0],
        "high": ordered[-1],
        "rounds": len(ordered),
    }


def paired(rows: list[dict], leg: str, other: str) -> list[tuple[dict, dict]]:
    """(leg's row, other's row) for each round in which both ran (rows carry "round" and "leg")."""
    theirs = {r["round"]: r for r in rows if r["leg"] == other}
    return [(r, theirs[r["round"]]) for r in rows if r["leg"] == leg and r["round"] in theirs]


def shown(stat: dict | None, fmt: str) -> str:
    """'median (low to high)' for a table, or a dash where the figure was not measured."""
    if not stat:
        return "–"
    return f"{fmt.format(stat['median'])} ({fmt.format(stat['low'])} to {fmt.format(stat['high'])})"
