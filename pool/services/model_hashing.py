"""A library model's sha256, computed once in a thread of the supervisor: its progress
written to the row as it goes (the Models page shows it), the digest stamped beside the
file as pool/model_identity.py does, so no process computes it twice."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from django.db import connection

from pool.model_identity import compute, stamped
from pool.models import Model

log = logging.getLogger("pool.model_library")

PROGRESS_EVERY = 64 << 20  # bytes hashed between two writes of the progress


class Hasher:
    """Hashes the library's unhashed models on this host, one at a time, in a thread."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        """Start hashing the next model that needs it, unless a hash is already running."""
        if self._thread is not None and self._thread.is_alive():
            return
        if connection.in_atomic_block:  # the thread's own connection could not see this transaction's rows
            return
        model = Model.objects.filter(sha256="", hash_error="").first()
        if model is None or not Path(model.path).is_file():
            return
        self._thread = threading.Thread(target=_hash_in_thread, args=(model.pk,), name="hash", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def _hash_in_thread(pk: int) -> None:
    try:
        hash_model(pk)
    finally:
        connection.close()  # the thread's own connection


def hash_model(pk: int) -> str:
    """Hash the file of model `pk`, writing its progress as it goes; returns the digest ('' on error)."""
    try:
        model = Model.objects.get(pk=pk)
        path = Path(model.path)
        digest = stamped(path) or compute(path, _progress_of(pk))
        Model.objects.filter(pk=pk).update(sha256=digest, hashed_bytes=path.stat().st_size)
        return digest
    except (OSError, Model.DoesNotExist) as exc:
        log.warning("could not hash model %s: %s", pk, exc)
        Model.objects.filter(pk=pk).update(hash_error=str(exc)[:255])
        return ""


def _progress_of(pk: int) -> Callable[[int], None]:
    """Writes the bytes hashed so far to the row, every PROGRESS_EVERY of them."""
    reported = 0

    def progress(done: int) -> None:
        nonlocal reported
        if done - reported >= PROGRESS_EVERY:
            reported = done
            Model.objects.filter(pk=pk).update(hashed_bytes=done)

    return progress
