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
from pathlib import Path

from pool.model_file import DEFAULT_MODEL, ModelChoice

log = logging.getLogger("pool.gateway")
_known: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256


def identify(model: ModelChoice) -> str | None:
    """The served GGUF's sha256, or None where it is not on this host (remote members only):
    the packaged default's is known, any other file's is read once per version."""
    if model.is_default and model.path.exists():
        return DEFAULT_MODEL.sha256
    return model_sha256(model.path)


def stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def model_sha256(path: Path) -> str | None:
    """The file's sha256, or None where it is not on this host (remote members only)."""
    try:
        st = path.stat()
    except OSError:
        return None
    seen = (str(path), st.st_size, st.st_mtime_ns)
    if seen in _known:
        return _known[seen]
    fingerprint = f"{st.st_size}:{st.st_mtime_ns}"
    stamp = stamp_path(path)
    try:
        stamped_for, _, digest = stamp.read_text().strip().partition(" ")
        if stamped_for == fingerprint and len(digest) == 64:
            _known[seen] = digest
            return digest
    except OSError:
        pass
    computed = _hash(path)
    if computed is None:
        return None
    _known[seen] = computed
    try:
        stamp.write_text(f"{fingerprint} {computed}\n")
    except OSError:  # a read-only model folder: computed again by the next process
        log.info("could not write %s; the model's sha256 is kept in memory only", stamp)
    return computed


def _hash(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(4 << 20):
                digest.update(block)
    except OSError as exc:
        log.warning("could not read the model file %s to identify it: %s", path, exc)
        return None
    return digest.hexdigest()
