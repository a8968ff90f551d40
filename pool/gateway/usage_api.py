"""What a platform may read back with its key: GET /v1/usage (the key's, or with ?user=
one student's, tokens and requests today and this month, the limits and what remains) and
GET /v1/usage/users (the key's students by tokens used, paged). A key reads only its own
students. Counts are the database's (written every two seconds) plus what this gateway
has not written yet; not the hot path, so it reads the database in a worker thread."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import parse_qsl

from django.conf import settings
from django.utils import timezone

from pool import usage
from pool.gateway import errors
from pool.gateway.registry import KeyInfo
from pool.gateway.students import student_name
from pool.gateway.usage_book import UsageBook

PERIODS = ("day", "month")
MAX_PAGE = 1000
DEFAULT_PAGE = 100


@dataclass(frozen=True)
class Query:
    user: str = ""
    period: str = "day"
    limit: int = DEFAULT_PAGE
    offset: int = 0


def parse_query(raw: bytes, allowed: tuple[str, ...]) -> Query:
    """The query string, checked: only `allowed` names, each once, in their own types."""
    try:
        pairs = parse_qsl(
            raw.decode("ascii"),
            keep_blank_values=True,
            strict_parsing=bool(raw),
            errors="strict",
            max_num_fields=8,
        )
    except (ValueError, UnicodeDecodeError):
        raise errors.invalid(
            "the query string is not valid (names and values in UTF-8)", code="invalid_query"
        ) from None
    given = dict(pairs)
    for name, _ in pairs:
        if name not in allowed:
            raise errors.invalid(f"unknown query parameter {name!r}", param=name, code="unknown_parameter")
    if len(given) != len(pairs):
        raise errors.invalid("each query parameter may be given once", code="invalid_query")
    period = given.get("period", "day")
    if period not in PERIODS:
        raise errors.invalid("period must be day or month", param="period")
    return Query(
        student_name(given.get("user"), param="user"),
        period,
        _whole(given, "limit", DEFAULT_PAGE, 1, MAX_PAGE),
        _whole(given, "offset", 0, 0, 10**9),
    )


def _whole(given: dict[str, str], name: str, default: int, least: int, most: int) -> int:
    text = given.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not least <= int(text) <= most:
        raise errors.invalid(f"{name} must be a whole number from {least} to {most}", param=name)
    return int(text)


def bounds(period: str, today: date) -> tuple[date, datetime]:
    """The period's first day and when it resets (aware, in TIME_ZONE)."""
    first = today if period == "day" else today.replace(day=1)
    following = today + timedelta(days=1) if period == "day" else (first + timedelta(days=32)).replace(day=1)
    return first, timezone.make_aware(datetime.combine(following, datetime.min.time()))


def pending(book: UsageBook, key: KeyInfo, user: str, first: date) -> usage.Spent:
    """What this gateway counted and has not written yet (read on the event loop)."""
    total = usage.Spent()
    if user:
        for (key_id, who, day), counts in list(book.students.items()):
            if key_id == key.id and who == user and day >= first:
                total += usage.Spent(*counts)
    else:
        for (tenant, day), row in list(book.pending.items()):
            if tenant == f"key:{key.id}" and day >= first:
                total += usage.Spent(int(row[0]), int(row[1]), int(row[2]))
    return total


def report(key: KeyInfo, query: Query, unwritten: dict[str, usage.Spent], today: date) -> dict:
    """GET /v1/usage's answer (a worker thread): today and this month, against the limits."""
    student = bool(query.user)
    quotas = (
        {"day": key.user_tokens_per_day, "month": key.user_tokens_per_month}
        if student
        else {"day": key.tokens_per_day, "month": key.tokens_per_month}
    )
    periods = {}
    for period in PERIODS:
        first, resets = bounds(period, today)
        used = usage.spent(f"key:{key.id}", first, today, query.user) + unwritten[period]
        limit = quotas[period]
        periods[period] = {
            "since": first.isoformat(),
            "resets_at": resets.isoformat(),
            "requests": used.requests,
            "prompt_tokens": used.prompt_tokens,
            "completion_tokens": used.completion_tokens,
            "total_tokens": used.tokens,
            "token_limit": limit,
            "tokens_remaining": None if limit is None else max(0, limit - used.tokens),
        }
    limits = (
        {"requests_per_minute": key.user_rpm, "parallel": key.user_parallel}
        if student
        else {"requests_per_minute": key.rpm, "tokens_per_minute": key.tpm, "parallel": key.max_parallel}
    )
    return {
        "object": "usage",
        "key": key.name,
        "user": query.user or None,
        "time_zone": settings.TIME_ZONE,
        "today": periods["day"],
        "this_month": periods["month"],
        "limits": limits,
    }


def students_page(key: KeyInfo, query: Query, today: date) -> dict:
    """GET /v1/usage/users' answer (a worker thread): the key's students by tokens, paged."""
    first, resets = bounds(query.period, today)
    limit = key.user_tokens_per_day if query.period == "day" else key.user_tokens_per_month
    found = usage.top_students(key.id, first, today, limit=query.limit + 1, offset=query.offset)
    more = len(found) > query.limit
    return {
        "object": "list",
        "period": query.period,
        "since": first.isoformat(),
        "resets_at": resets.isoformat(),
        "time_zone": settings.TIME_ZONE,
        "data": [
            {
                "user": row.user,
                "requests": row.spent.requests,
                "prompt_tokens": row.spent.prompt_tokens,
                "completion_tokens": row.spent.completion_tokens,
                "total_tokens": row.spent.tokens,
                "token_limit": limit,
                "tokens_remaining": None if limit is None else max(0, limit - row.spent.tokens),
            }
            for row in found[: query.limit]
        ],
        "has_more": more,
        "next_offset": query.offset + query.limit if more else None,
    }
