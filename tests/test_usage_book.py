"""The usage book's day: the operator's calendar day, worked out once and again when it ends."""

from datetime import UTC, datetime, timedelta

from django.utils import timezone

from pool.gateway import usage_book
from pool.gateway.usage_book import Today


def test_today_is_the_operators_calendar_day_until_its_midnight(settings, monkeypatch):
    settings.TIME_ZONE = "Pacific/Auckland"  # far from UTC: the UTC date is often another
    today = Today()
    assert today() == timezone.localdate()
    midnight = timezone.make_aware(
        datetime.combine(timezone.localdate() + timedelta(days=1), datetime.min.time())
    )
    assert today.until <= midnight.timestamp()
    # Past the moment it was good until, it is worked out again: the next day's date.
    later = today.until + 1
    then = timezone.localtime(datetime.fromtimestamp(later, UTC))
    monkeypatch.setattr(usage_book.time, "time", lambda: later)
    monkeypatch.setattr(usage_book.timezone, "localtime", lambda: then)
    assert today() == then.date() and today.until > later
