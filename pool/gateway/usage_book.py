"""Usage per tenant and day of the operator's calendar (TIME_ZONE), kept in memory on the
request's path and added to the database (UsageDay) every few seconds from a worker
thread: the keys page's chart and CSV, the quotas' starting counts, the cache panel."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta

from django.db import close_old_connections
from django.utils import timezone

from pool.services.usage import add_student_day, add_usage_day

FIELDS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cache_hits",
    "cache_misses",
    "saved_tokens",
    "saved_s",
)


STUDENT_FIELDS = ("requests", "prompt_tokens", "completion_tokens")


class Today:
    """Today's date in the operator's time zone, worked out again only once the day (or at
    the latest an hour, so that a DST change at midnight cannot keep a wrong day long) has
    passed: `timezone.localdate()` reads the active zone through asgiref's Local, which is
    not free on the event loop, and every request asks."""

    def __init__(self) -> None:
        self.day = date.min
        self.until = 0.0  # time.time() at which to work it out again

    def __call__(self) -> date:
        now = time.time()
        if now >= self.until:
            local = timezone.localtime()
            self.day = local.date()
            midnight = timezone.make_aware(
                datetime.combine(self.day + timedelta(days=1), datetime.min.time())
            )
            self.until = min(midnight.timestamp(), now + 3600)
        return self.day


class UsageBook:
    def __init__(self) -> None:
        self.pending: dict[tuple[str, date], list[float]] = {}
        self.students: dict[tuple[int, str, date], list[int]] = {}  # (key id, user, day) -> counts
        self.today = Today()

    def add_student(self, key_id: int, user: str, *, prompt_tokens: int, completion_tokens: int) -> None:
        row = self.students.setdefault((key_id, user, self.today()), [0, 0, 0])
        row[0] += 1
        row[1] += prompt_tokens
        row[2] += completion_tokens

    def add(
        self,
        tenant: str,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        hit: bool = False,
        miss: bool = False,
        saved_tokens: int = 0,
        saved_s: float = 0.0,
    ) -> None:
        row = self.pending.setdefault((tenant, self.today()), [0, 0, 0, 0, 0, 0, 0.0])
        row[0] += 1
        row[1] += prompt_tokens
        row[2] += completion_tokens
        row[3] += hit
        row[4] += miss
        row[5] += saved_tokens
        row[6] += saved_s

    def flush(self) -> None:
        """Runs in a worker thread."""
        pending, self.pending = self.pending, {}
        students, self.students = self.students, {}
        if not (pending or students):
            return
        close_old_connections()
        self.flush_students(students)
        for (tenant, day), row in pending.items():
            add_usage_day(tenant, day, dict(zip(FIELDS, row, strict=True)))

    @staticmethod
    def flush_students(students: dict[tuple[int, str, date], list[int]]) -> None:
        for (key_id, user, day), row in students.items():
            add_student_day(key_id, user, day, dict(zip(STUDENT_FIELDS, row, strict=True)))
