"""The answer cache's key: what determines an answer, hashed.

That is the model file (its sha256, pool/model_identity.py), the task, the messages as
sent (the operator's system prompt included) normalised only where that cannot change a
problem (`normalise`), every other field that reaches the
member (temperature, top_p, seed, stop, max_tokens...) and the tenant.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata

# Fields that change how the answer is delivered, not what it says.
NOT_DETERMINING = frozenset({"stream", "stream_options", "user", "model"})
NUMBERS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")


def normalise(text: str, task: str = "math") -> str:
    """Only what cannot change a problem: Unicode NFC (never NFKC, which makes 2⁵ of 25,
    x² of x2, ½ of 1/2), line endings, trailing spaces and blank edges; and, outside the
    programming task, runs of spaces inside a line, never its indentation. Case, digits,
    super- and subscripts, full-width signs and primes stay as written."""
    lines = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [line.rstrip() for line in lines]
    if task != "code":
        lines = [_squeeze(line) for line in lines]
    return "\n".join(lines).strip("\n")


def _squeeze(line: str) -> str:
    body = line.lstrip(" \t")
    return line[: len(line) - len(body)] + re.sub(r"[ \t]+", " ", body)


def cache_key(model_sha256: str, path: str, task: str, body: dict, tenant: str) -> str:
    """Within one tenant (a key, or the solve page's students): a platform must not learn
    from a hit's speed or header what another platform's users asked."""
    determining = {k: v for k, v in body.items() if k not in NOT_DETERMINING}
    for name in NUMBERS:  # temperature 0 and 0.0 are one setting
        if name in determining:
            determining[name] = float(determining[name])
    if "messages" in body:
        determining["messages"] = [
            {**m, "content": normalise(m["content"], task) if isinstance(m["content"], str) else m["content"]}
            for m in body["messages"]
        ]
    if isinstance(body.get("prompt"), str):
        determining["prompt"] = normalise(body["prompt"], task)
    determining["_model"], determining["_path"], determining["_task"] = model_sha256, path, task
    determining["_tenant"] = tenant
    canonical = json.dumps(determining, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def is_sampled(body: dict) -> bool:
    """With temperature above 0 (or none given: members default to 0.8) an answer is one
    sample of what the model would say."""
    temperature = body.get("temperature")
    return temperature is None or temperature > 0
