"""A profile's figures as the CLI's table and the dashboard's table and plot show them."""

from __future__ import annotations

from pool.models import ProfileRun
from pool.profiling import plan as planning


def ttft_text(point: planning.Point | None) -> str:
    if point is None or point.ttft_p50_s is None:
        return "–"
    return f"{'>' if point.ttft_censored else ''}{point.ttft_p50_s:.2f}"


def rows(run: ProfileRun, *, typical_tokens: int) -> list[dict]:
    """One row per planned layout: tokens/s and p50 TTFT per level ('–' where not measured),
    and the answers a minute of `typical_tokens` at its best level."""
    levels = run.plan.get("levels", list(planning.LEVELS))
    points = {(p.layout, p.level): p for p in planning.measured_points(run)}
    out = []
    for layout in planning.planned_layouts(run):
        mine = [points.get((layout.key, n)) for n in levels]
        best = max((p.tokens_per_s for p in mine if p), default=None)
        out.append(
            {
                "layout": layout,
                "speeds": [f"{p.tokens_per_s:.1f}" if p else "–" for p in mine],
                "ttfts": [ttft_text(p) for p in mine],
                "per_minute": (
                    f"{planning.answers_per_minute(best, typical_tokens):.1f}" if best is not None else "–"
                ),
                "status": run.layouts.get(layout.key, ""),
            }
        )
    return out


def chart(run: ProfileRun) -> dict:
    """For uPlot: the levels on x, and per layout its tokens/s and TTFT (null: not measured)."""
    levels = run.plan.get("levels", list(planning.LEVELS))
    points = {(p.layout, p.level): p for p in planning.measured_points(run)}
    series = []
    for layout in planning.planned_layouts(run):
        mine = [points.get((layout.key, n)) for n in levels]
        if any(mine):
            series.append(
                {
                    "label": layout.label,
                    "tokens": [round(p.tokens_per_s, 2) if p else None for p in mine],
                    "ttft": [
                        round(p.ttft_p50_s, 3) if p and p.ttft_p50_s is not None else None for p in mine
                    ],
                }
            )
    return {"levels": levels, "series": series}
