"""What the dashboard shows, built in one place: the members table's rows, the pool's
totals and the charts' points. Pages render it on first load; the runtime pushes it over
the websocket once a second, so the same formatting serves both.
"""

from __future__ import annotations

import time

from django.db.models import Count
from django.utils import timezone

from pool import inflight, metrics
from pool.loops import resources
from pool.models import AlertRule, Member, Node, states

DASH = "–"


def seconds(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def duration(value: float | None) -> str:
    if value is None:
        return DASH
    value = int(value)
    if value < 120:
        return f"{value}s"
    if value < 7200:
        return f"{value // 60}m"
    return f"{value // 3600}h {value % 3600 // 60}m"


def mebibytes(value: int | None) -> str:
    return DASH if value is None else f"{value / 2**20:,.0f} MiB"


# Shown instead of a member's stored state while its node's supervisor is not reporting:
# the stored state is stale, and the gateway does not route to it.
UNREACHABLE = "unreachable"


def member_row(
    member: Member, figures: dict | None, use: resources.ProcessUse | None, node_lost: bool = False
) -> dict:
    """One row of the members table, as display strings."""
    facts = member.facts(node_lost=node_lost)
    figures = figures or {}
    gpu = DASH if member.gpu is None else str(member.gpu)
    if use is not None and use.gpu_bytes:
        gpu += f" · {mebibytes(use.gpu_bytes)}"
    return {
        **{key: facts[key] for key in ("name", "node", "node_lost", "wants", "kind", "model")},
        "state": UNREACHABLE if node_lost and member.state not in states.STOPPED_STATES else member.state,
        "address": facts["url"] or DASH,
        "weight": str(member.weight),
        "gpu": gpu,
        "inflight": str(inflight.count(member.pk)),
        "slots": str(member.max_inflight),
        "engine": member.engine,
        "rps": f"{figures.get('rps', 0):.2f}",
        "p50": seconds(figures.get("p50_s")),
        "p95": seconds(figures.get("p95_s")),
        "errors": str(figures.get("errors", 0)),
        "restarts": str(member.restarts),
        "uptime": duration(member.uptime_s()),
        "cpu": DASH if use is None else f"{use.cpu_percent:.0f}%",
        "memory": DASH if use is None else mebibytes(use.rss_bytes),
        "actions": member.available_actions(),
        "error": member.last_error.splitlines()[-1][:160] if member.last_error.strip() else "",
    }


def member_rows(members: list[Member], now: float | None = None) -> list[dict]:
    by_member = metrics.summary(60, now)["members"]
    uses = resources.latest.members if resources.latest else {}
    lost = Node.objects.lost_names()
    return [member_row(m, by_member.get(m.name), uses.get(m.name), m.node in lost) for m in members]


def node_rows() -> list[dict]:
    """Each node's supervisor: when it last reported, and whether it is lost."""
    now = timezone.now()
    counts = dict(Member.objects.values("node").annotate(n=Count("id")).values_list("node", "n"))
    return [
        {
            "name": n.name,
            "address": n.address,
            "pid": n.pid or DASH,
            "lost": n.is_lost(),
            "seen": duration((now - n.last_seen_at).total_seconds()) + " ago" if n.last_seen_at else "never",
            "members": counts.get(n.name, 0),
        }
        for n in Node.objects.all()
    ]


def signature(rows: list[dict]) -> str:
    """Changes whenever the table's shape does (a member added, removed or changing state)."""
    return "|".join(
        f"{r['name']}:{r['state']}:{r['wants']}:{r['weight']}:{r['gpu'].split(' ')[0]}" for r in rows
    )


def queue_depth() -> int:
    """Requests waiting for a member: in every gateway when they share Redis, else in this one."""
    return inflight.waiting()


def totals(now: float | None = None) -> dict:
    s = metrics.summary(60, now)
    return {
        "rps": f"{s['rps']:.2f}",
        "p50": seconds(s["p50_s"]),
        "p95": seconds(s["p95_s"]),
        "ttft": seconds(s["ttft_p50_s"]),
        "tokens": f"{s['tokens_per_s']:.1f}",
        "inflight": str(sum(inflight.snapshot().values())),
        "queue": str(queue_depth()),
        "errors": f"{s['error_rate'] * 100:.1f}%",
        "ready": str(Member.objects.filter(state=states.READY).count()),
        "members": str(Member.objects.count()),
        "alerts": str(AlertRule.objects.filter(firing=True).count()),
    }


def chart_history(now: float | None = None) -> list[dict]:
    """The last 15 minutes, one point per second, gaps filled with zeros (and no latency)."""
    now = int(now if now is not None else time.time())
    seen = {p["t"]: p for p in metrics.history(metrics.HISTORY_S, now)}
    return [seen.get(t) or empty_point(t) for t in range(now - metrics.HISTORY_S + 1, now)]


def empty_point(t: int) -> dict:
    return {
        "t": t,
        "rps": 0,
        "errors": 0,
        "tokens": 0,
        "p50_s": None,
        "p95_s": None,
        "ttft_s": None,
        "queue": 0,
        "inflight": 0,
        "tenants": {},
        "waiting": {},
        "predicted_s": None,
        "waited_s": None,
        "by_member": {},
    }


def chart_point(now: float) -> dict:
    """The last finished second, as metrics.history gives it."""
    at = int(now) - 1
    return next((p for p in metrics.history(3, now) if p["t"] == at), None) or empty_point(at)


def revised_tokens(now: float) -> list[dict]:
    """Seconds already drawn whose tokens a whole answer has since added to (it is counted
    over the time it was generated, once it ends): their tokens, for the charts to redraw."""
    oldest = metrics.take_revised()
    if oldest is None:
        return []
    at = int(now) - 1
    seen = {p["t"]: p for p in metrics.history(at - oldest + 2, now)}
    return [
        {"t": t, "tokens": seen[t]["tokens"], "by_member": seen[t]["by_member"]}
        for t in range(oldest, at + 1)
        if t in seen
    ]


def gpu_status() -> dict:
    if resources.latest is None:
        return {"available": False, "reason": "not measured yet", "gpus": []}
    report = resources.latest.gpu
    gpus = [
        {"index": g.index, "name": g.name, "memory_total_mib": round(g.memory_total / 2**20)}
        for g in report.gpus
    ]
    return {"available": report.available, "reason": report.reason, "gpus": gpus}


def build(now: float | None = None) -> dict:
    """Everything the dashboard's pages update live, from the database, the gateway's
    figures and the latest resource sample (taken by its own loop, pool/loops/runtime.py)."""
    now = now if now is not None else time.time()
    members = list(Member.objects.select_related("model"))
    rows = member_rows(members, now)
    return {
        "t": int(now),
        "at": timezone.localtime().strftime("%H:%M:%S"),
        "point": chart_point(now),
        "revised": revised_tokens(now),
        "usage": resources.history[-1] if resources.history else None,
        "gpu": gpu_status(),
        "totals": totals(now),
        "members": rows,
        "signature": signature(rows),
    }


def chart_columns(now: float | None = None) -> dict[str, list]:
    """chart_history as one list per series, the shape the chart library draws."""
    points = chart_history(now)
    keys = (
        "t",
        "rps",
        "errors",
        "tokens",
        "p50_s",
        "p95_s",
        "ttft_s",
        "queue",
        "inflight",
        "tenants",
        "waiting",
        "predicted_s",
        "waited_s",
        "by_member",
    )
    return {key: [p[key] for p in points] for key in keys}
