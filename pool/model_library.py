"""Reading a GGUF before any member tries it.

`inspect` reads what the file says of itself with the `gguf` package (llama.cpp's own
reader): architecture, parameter count, quantisation, trained context, whether a chat
template is inside. A file that is not a GGUF, is cut short, or has an architecture the
bundled llama.cpp does not know is refused with one line. Its sha256 is hashed once, in the
background (pool/services/model_hashing.py), and stamped beside it as pool/model_identity.py
does, so the digest is never computed twice.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pool.llama_build import libllama
from pool.model_file import GGUF_MAGIC, ModelFileError


@dataclass(frozen=True)
class GgufFacts:
    architecture: str
    parameters: int
    quantization: str
    context_length: int | None
    has_chat_template: bool
    kv_bytes_per_token: int
    size: int

    @classmethod
    def unknown(cls, size: int) -> GgufFacts:
        """A configured file the reader could not read: nothing known but its size."""
        return cls("", 0, "", None, False, 0, size)


def inspect(path: Path) -> GgufFacts:
    """What the GGUF at `path` says of itself; ModelFileError (one line) if it cannot be served.
    Read once per file: the reader parses the whole vocabulary (seconds), so the facts are
    kept beside the file, like its sha256, for as long as its size and mtime stay."""
    size = _check_header(path)
    facts = _remembered(path)
    if facts is None:
        facts = _read(path, size)
        with contextlib.suppress(OSError):  # a read-only folder: read again next time
            facts_path(path).write_text(json.dumps({"for": _fingerprint(path), **asdict(facts)}))
    if not supported(facts.architecture):
        raise ModelFileError(
            f"{path} is a {facts.architecture!r} model, an architecture the bundled llama.cpp cannot load"
        )
    return facts


def facts_path(path: Path) -> Path:
    return path.with_name(path.name + ".facts.json")


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _remembered(path: Path) -> GgufFacts | None:
    try:
        stored = json.loads(facts_path(path).read_text())
        if stored.pop("for") == _fingerprint(path):
            return GgufFacts(**stored)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _read(path: Path, size: int) -> GgufFacts:
    import gguf  # numpy and the reader: only where a model is added

    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, OSError) as exc:
        raise ModelFileError(
            f"{path} is truncated or damaged: its GGUF layout cannot be read ({exc})"
        ) from None
    end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise ModelFileError(f"{path} is truncated: its tensors need {end:,} bytes, the file has {size:,}")
    arch = _text(reader, "general.architecture")
    if not arch:
        raise ModelFileError(
            f"{path} names no architecture (general.architecture): not a model llama.cpp can load"
        )
    if not supported(arch):
        raise ModelFileError(f"{path} is a {arch!r} model, an architecture the bundled llama.cpp cannot load")
    return GgufFacts(
        architecture=arch,
        parameters=sum(int(t.n_elements) for t in reader.tensors),
        quantization=_quantization(reader, gguf),
        context_length=_number(reader, f"{arch}.context_length"),
        has_chat_template="tokenizer.chat_template" in reader.fields,
        kv_bytes_per_token=_kv_bytes_per_token(reader, arch),
        size=size,
    )


def _check_header(path: Path) -> int:
    try:
        with path.open("rb") as f:
            magic = f.read(4)
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelFileError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a folder, not a GGUF file") from None
    except OSError as exc:
        raise ModelFileError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
    return size


def supported(arch: str) -> bool:
    """Whether the bundled libllama knows `arch`: its architecture names are strings in the
    library. True where no library is found to ask (a remote-only host)."""
    library = libllama()
    if library is None:
        return True
    data = _library_bytes(library)
    return arch.encode() + b"\0" in data


_libraries: dict[tuple[str, int], bytes] = {}


def _library_bytes(library: Path) -> bytes:
    key = (str(library), library.stat().st_mtime_ns)
    if key not in _libraries:
        _libraries[key] = library.read_bytes()
    return _libraries[key]


def _field(reader, key: str):
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def _text(reader, key: str) -> str:
    value = _field(reader, key)
    return value if isinstance(value, str) else ""


def _number(reader, key: str) -> int | None:
    value = _field(reader, key)
    return int(value) if isinstance(value, int | float) else None


def _quantization(reader, gguf) -> str:
    file_type = _number(reader, "general.file_type")
    if file_type is None:
        return ""
    try:
        return gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_")
    except ValueError:
        return f"type {file_type}"


def _kv_bytes_per_token(reader, arch: str) -> int:
    """Keys and values of one token in f16, over every layer (the engines' default cache type)."""
    layers = _number(reader, f"{arch}.block_count") or 0
    heads = _number(reader, f"{arch}.attention.head_count") or 0
    kv_heads = _number(reader, f"{arch}.attention.head_count_kv") or heads
    width = _number(reader, f"{arch}.embedding_length") or 0
    key_length = _number(reader, f"{arch}.attention.key_length") or (width // heads if heads else 0)
    value_length = _number(reader, f"{arch}.attention.value_length") or key_length
    return layers * kv_heads * (key_length + value_length) * 2
