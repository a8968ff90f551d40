"""Real llama.cpp for the tests marked real_model: llama-server found (`llama_server_binary`)
and started by hand (`start_llama_server`, the `llama_server` and `built_llama_server`
fixtures), and `manage.py serve` with one real member (`serving_one_member`). Loaded
through conftest's pytest_plugins."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from tests.helpers import answers, free_port, manage, start_serve, stop_serve, wait_ready, wait_until

NOT_BUILT = "llama-server is not built (bin/build-llama-server)"


def llama_server_binary() -> Path | None:
    """The llama-server members run: VIBEADMIN_LLAMA_SERVER's, or the one `make install`
    builds (~/.cache/vibeadmin/llama-server/); None where neither is there."""
    from pool import llama_build

    named = os.environ.get("VIBEADMIN_LLAMA_SERVER")
    path = Path(named) if named else llama_build.default_llama_server()
    return path if path.is_file() else None


def start_llama_server(model: Path, *, parallel: int = 1, api_key: str = "") -> tuple[subprocess.Popen, str]:
    """llama-server as an operator starts it by hand (on a GPU host): no help from
    vibeadmin. The child, and its URL once it is started (it may still be loading)."""
    binary = llama_server_binary()
    assert binary is not None, NOT_BUILT
    port = free_port()
    command = [
        str(binary),
        *("--model", str(model), "--host", "127.0.0.1", "--port", str(port)),
        *("--parallel", str(parallel), "--ctx-size", str(512 * parallel), "--threads", "1"),
        *("--no-jinja", "--chat-template", "gemma"),  # the template by name, as members are started
        "--no-webui",
    ]
    if api_key:
        command += ["--api-key", api_key]
    env = {**os.environ, "LD_LIBRARY_PATH": str(binary.parent)}  # its libraries lie beside it
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return child, f"http://127.0.0.1:{port}"


def wait_loaded(child: subprocess.Popen, url: str) -> None:
    wait_until(lambda: answers(url + "/health") or child.poll() is not None, 120, what="llama-server to load")
    assert child.poll() is None, "llama-server exited"


@pytest.fixture(scope="module")
def built_llama_server() -> Path:
    """The llama-server binary; the test is skipped where it is not built."""
    path = llama_server_binary()
    if path is None:
        pytest.skip(f"{NOT_BUILT}: `make install` builds it")
    return path


@pytest.fixture(scope="module")
def llama_server(built_llama_server, gemma_model):
    """One llama-server of the small gemma GGUF with one slot, loaded, for the test module."""
    child, url = start_llama_server(gemma_model.path)
    try:
        wait_loaded(child, url)
        yield url
    finally:
        child.terminate()
        child.wait(timeout=10)


def chat_request(url: str, key: str) -> int:
    """The status of a short chat completion sent straight to a member with `key`."""
    body = json.dumps({"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}).encode()
    request = urllib.request.Request(
        url + "/v1/chat/completions",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclass
class Served:
    url: str
    data_dir: Path
    model_id: str
    key: str

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0, timeout=120)


@contextlib.contextmanager
def serving_one_member(folder: Path, migrated_template: Path, model: Path, **env: str) -> Iterator[Served]:
    """`manage.py serve` with one member of `model`, over a copy of the migrated template,
    and a platform key; `env` adds to (or overrides) the settings every such test uses."""
    data_dir = folder / "data"
    shutil.copytree(migrated_template, data_dir)
    port = str(free_port())
    env = {
        "VIBEADMIN_PORT": port,
        "VIBEADMIN_MEMBERS": "1",
        "VIBEADMIN_MODEL": str(model),
        "VIBEADMIN_CHAT_FORMAT": "gemma",
        "VIBEADMIN_N_CTX": "512",
        "VIBEADMIN_REFRESH_S": "0.1",
        **env,
    }
    key = manage("apikey", "create", "algebra-school", data_dir=data_dir).stdout.strip().splitlines()[-1]
    output = folder / "serve.out"
    child = start_serve(data_dir, log=output, **env)
    try:
        wait_ready(child, output, 1)
        yield Served(f"http://127.0.0.1:{port}", data_dir, model.stem, key)
    finally:
        stop_serve(child, data_dir)
