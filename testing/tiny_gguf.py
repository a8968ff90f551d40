"""Tiny GGUF files for the model library's tests, written with the `gguf` package's own
writer: a real GGUF header, metadata and tensors, a few kilobytes, no weights worth
loading. Never served: only read (and refused) by the library."""

from __future__ import annotations

from pathlib import Path


def write_tiny_gguf(path: Path, *, arch: str = "llama", chat_template: str = "", file_type: int = 15) -> Path:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_context_length(2048)
    writer.add_embedding_length(64)
    writer.add_block_count(2)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_file_type(file_type)
    if chat_template:
        writer.add_chat_template(chat_template)
    writer.add_tensor("token_embd.weight", np.zeros((32, 64), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
