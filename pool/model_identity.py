"""The model file's identity, for the answer cache and the accuracy check's runs: its sha256, not its path, size and
mtime (a file copied over another with the same size and an old mtime would then serve
the old model's answers).

Hashing 0.25-1.5 GB takes a second or more, so it is done once: the digest is written
next to the file (`<model>.sha256`, with the size and mtime it was computed for) and
reused while those agree; a process that cannot write there keeps it in memory. Called in
the gateway's background refresh thread, never on a request's path.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from pool.model_file import DEFAULT_MODEL, ModelChoice

log = logging.getLogger("pool.gateway")
_known: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256
BLOCK = 4 << 20


def identify(model: ModelChoice) -> str | None:
    """The served GGUF's sha256, or None where it is not on this host (remote members only):
    the packaged default's is known, any other file's is read once per version."""
    if model.is_default and model.path.exists():
        return DEFAULT_MODEL.sha256
    return model_sha256(model.path)


def stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def model_sha256(path: Path) -> str | None:
    """The file's sha256, or None where it is not on this host (remote members only) or
    cannot be read."""
    try:
        return stamped(path) or compute(path)
    except OSError as exc:
        log.warning("could not read the model file %s to identify it: %s", path, exc)
        return None


def stamped(path: Path) -> str:
    """The digest known for the file as it is now (in memory, or stamped beside it), or ''.
    Raises OSError where the file is not there."""
    st = path.stat()
    seen = (str(path), st.st_size, st.st_mtime_ns)
    if seen in _known:
        return _known[seen]
    try:
        stamped_for, _, digest = stamp_path(path).read_text().strip().partition(" ")
    except OSError:
        return ""
    if stamped_for != f"{st.st_size}:{st.st_mtime_ns}" or len(digest) != 64:
        return ""
    _known[seen] = digest
    return digest


def compute(path: Path, progress: Callable[[int], None] | None = None) -> str:
    """Read the whole file once (`progress` told the bytes done after each block), then stamp
    the digest beside it. Raises OSError where it cannot be read or changed meanwhile."""
    digest = hashlib.sha256()
    before = path.stat()
    done = 0
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress(done)
    after = path.stat()
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise OSError(f"{path} changed while it was hashed")
    computed = digest.hexdigest()
    _known[(str(path), after.st_size, after.st_mtime_ns)] = computed
    try:
        stamp_path(path).write_text(f"{after.st_size}:{after.st_mtime_ns} {computed}\n")
    except OSError:  # a read-only model folder: computed again by the next process
        log.info("could not write %s; the model's sha256 is kept in memory only", stamp_path(path))
    return computed
