"""A rollout of real llama-server members (the small gemma GGUF, and the same file under
another name, a hard link): `pool rollout NAME --wait` moves both members while a client
keeps asking through the alias, and not one request fails. Its timing is bench.rollout's."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request

import pytest

from tests.helpers import free_port, manage, start_serve, stop_serve, wait_ready

pytestmark = pytest.mark.real_model


def test_a_rolling_replacement_of_real_members_fails_no_request(data_dir, gemma_model, tmp_path):
    other = tmp_path / "gemma-again.gguf"
    os.link(gemma_model.path, other)  # the same bytes under another name: another library model
    port, api_port = free_port(), free_port()
    env = {
        "VIBEADMIN_PORT": str(port),
        "VIBEADMIN_API_PORT": str(api_port),
        "VIBEADMIN_MODEL": str(gemma_model.path),
        "VIBEADMIN_CHAT_FORMAT": "gemma",
        "VIBEADMIN_N_CTX": "512",
        "VIBEADMIN_SLOTS": "2",
    }
    output = tmp_path / "serve.out"
    child = start_serve(data_dir, log=output, **env)
    stop, answered, failed = threading.Event(), [], []
    try:
        wait_ready(child, output, 2)
        key = manage("apikey", "create", "school", data_dir=data_dir, **env).stdout.strip().splitlines()[-1]
        added = manage(
            "pool",
            "model",
            "add",
            str(other),
            "--name",
            "gemma-again",
            "--chat-format",
            "gemma",
            data_dir=data_dir,
            **env,
        )
        assert added.returncode == 0, added.stderr

        def client() -> None:
            while not stop.is_set():
                body = {
                    "model": "vibethinker",
                    "messages": [{"role": "user", "content": "2+2="}],
                    "max_tokens": 4,
                }
                request = urllib.request.Request(
                    f"http://127.0.0.1:{api_port}/v1/chat/completions",
                    data=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
                )
                try:
                    with urllib.request.urlopen(request, timeout=120) as response:
                        answered.append(response.status)
                except (urllib.error.URLError, OSError) as exc:
                    failed.append(str(exc))

        clients = [threading.Thread(target=client) for _ in range(2)]
        for thread in clients:
            thread.start()
        rolled = manage("pool", "rollout", "gemma-again", "--wait", data_dir=data_dir, timeout=300, **env)
        stop.set()
        for thread in clients:
            thread.join(timeout=120)
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert "done: every member serves gemma-again" in rolled.stdout
        status = json.loads(manage("pool", "status", "--json", data_dir=data_dir, **env).stdout)
        assert {m["model"] for m in status if m["wants"] == "run"} == {"gemma-again"}
        assert failed == [] and len(answered) > 0
    finally:
        stop.set()
        stop_serve(child, data_dir)
