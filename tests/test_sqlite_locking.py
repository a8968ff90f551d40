"""On the embedded SQLite, a transaction that reads and then writes never fails with
"database is locked" because another connection wrote in between: the supervisor's
heartbeat (update_or_create) did, four times in two minutes under load.

With SQLite's default (deferred) transactions the read takes a snapshot; once another
connection commits a write, the snapshot is stale and the write fails at once, whatever
the busy timeout. The settings' `transaction_mode: IMMEDIATE` takes the write lock at
BEGIN, so the other writer waits instead. Both connections are Django's, with the
project's settings, one per thread.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from pool.models import Node

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_read_then_write_transaction_survives_a_write_that_lands_between(settings):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's locking only")
    Node.objects.create(name="here", last_seen_at=timezone.now(), pid=1)
    read_done, other_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def other_writer():
        read_done.wait(10)
        try:
            Node.objects.create(name="elsewhere", last_seen_at=timezone.now(), pid=2)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()
            other_done.set()

    writer = threading.Thread(target=other_writer)
    writer.start()
    try:
        with transaction.atomic():
            Node.objects.get(name="here")  # the read
            read_done.set()
            # Deferred: the other write commits now. Immediate: it waits for this one.
            other_done.wait(3)
            Node.objects.filter(name="here").update(pid=3)  # the write
    finally:
        read_done.set()
        writer.join(30)
    assert errors == []
    assert Node.objects.get(name="here").pid == 3
    assert Node.objects.filter(name="elsewhere").exists()
