"""The default model (the 1.5B stand-in, VIBEADMIN_MODEL unset) answers a real problem
right, end to end: `manage.py serve` as `make run` starts it, one llama-server member with
the chat template from the GGUF, a platform's request through the gateway with the math
task (the operator's math prompt), the answer read as the eval reads it. The one test in
the suite on the 1.5B: the others name the small gemma GGUF, which starts in seconds."""

from __future__ import annotations

import openai
import pytest

from pool.final_answers import is_correct
from tests.real_members import serving_one_member

pytestmark = pytest.mark.real_model


@pytest.mark.timeout(900)  # loading 1.1 GB and ~200 tokens on 2 busy cores
def test_the_default_model_solves_a_linear_equation_through_the_gateway(
    default_model, migrated_template, tmp_path
):
    with serving_one_member(
        tmp_path,
        migrated_template,
        default_model.path,
        VIBEADMIN_MODEL="",  # unset: the default, as on a fresh clone
        VIBEADMIN_CHAT_FORMAT="",
        VIBEADMIN_ENGINE="llama-server",
        VIBEADMIN_SLOTS="1",
        VIBEADMIN_N_CTX="1024",
    ) as served:
        client = openai.OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0, timeout=600)
        assert [m.id for m in client.models.list()] == ["qwen2.5-coder-1.5b-instruct", "vibethinker"]

        reply = client.chat.completions.create(
            model="vibethinker",
            messages=[{"role": "user", "content": "Solve for x: 3x + 5 = 20."}],
            max_tokens=400,
            temperature=0,
            extra_body={"vibeadmin": {"task": "math"}},
        )

    text = reply.choices[0].message.content
    assert "\\boxed{" in text, text  # the operator's math prompt reached the model
    assert is_correct(text, "5")[0], text
