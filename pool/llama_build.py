"""Where the bundled llama.cpp lives: the llama-server build `make install` caches, and the
shared library beside it (or llama-cpp-python's own), which the model library reads to know
which architectures this llama.cpp can load."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

from django.conf import settings


def default_llama_server() -> Path:
    """Where bin/build-llama-server keeps the build for the installed llama-cpp-python."""
    try:
        version = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        version = "0.3.36"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "vibeadmin" / "llama-server" / version / "llama-server"


def llama_server_path() -> Path:
    return settings.VIBEADMIN_LLAMA_SERVER or default_llama_server()


def libllama() -> Path | None:
    """The libllama the members load: beside llama-server, else llama-cpp-python's; None if neither."""
    folders = [llama_server_path().parent]
    spec = importlib.util.find_spec("llama_cpp")
    if spec is not None and spec.origin:
        folders.append(Path(spec.origin).parent / "lib")
    for folder in folders:
        for name in ("libllama.so", "libllama.dylib"):
            if (folder / name).is_file():
                return folder / name
    return None
