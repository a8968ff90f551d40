"""Active health checks, on a path that fits each member's engine.

llama-server answers /health at once: 503 while its model loads, 200 once it serves. It
has no /openapi.json. llama-cpp-python's server has no /health, and GET /v1/models takes
the model's lock: on a busy member it waits behind the generation, and with interrupts on
it cuts the running stream short. FastAPI's own /openapi.json takes no lock and answers at
once even while the member generates, so a busy member is never taken for a sick one.

A remote member may be either, or another OpenAI-style server: its probe tries /health,
then /openapi.json, then /v1/models, and the first path that exists decides. Every probe
sends the member's API key; where a remote llama-server answers /props, its slots are read.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from pool.models import Member, states

PROBE_PATH = "/openapi.json"
LLAMA_SERVER_PATH = "/health"
# /openapi.json before /v1/models: the latter takes a llama-cpp-python server's model lock.
REMOTE_PATHS = ("/health", "/openapi.json", "/v1/models")
MAX_PROPS_BYTES = 256 * 1024
MAX_METRICS_BYTES = 256 * 1024
# llama-server's own Prometheus series: `llamacpp:tokens_predicted_total 1234`.
ENGINE_SERIES = re.compile(r"^llamacpp:([a-z_]+) ([0-9.eE+-]+)$", re.MULTILINE)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    elapsed_s: float
    error: str = ""
    status: int = 0
    slots: int | None = None  # a remote llama-server's total_slots, from /props
    engine_series: dict[str, float] = field(default_factory=dict)  # llama-server's /metrics


def probe(base_url: str, timeout_s: float, path: str = PROBE_PATH, *, api_key: str = "") -> ProbeResult:
    started = time.monotonic()
    status = 0
    try:
        with urllib.request.urlopen(_request(base_url + path, api_key), timeout=timeout_s) as response:
            response.read(1)
            status = response.status
            ok, error = 200 <= status < 300, f"HTTP {status}"
    except urllib.error.HTTPError as exc:
        status = exc.code
        ok, error = False, f"HTTP {exc.code} from {path}"
        if exc.code == 401:
            error += ": it wants an API key; set the member's key"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        ok, error = False, f"no answer on {path}: {reason}"
    except ValueError as exc:  # a malformed URL
        ok, error = False, str(exc)
    return ProbeResult(ok, time.monotonic() - started, "" if ok else error, status)


def probe_member(member: Member, timeout_s: float) -> ProbeResult:
    """One health check of `member` on the path its engine offers (runs in a worker thread)."""
    key = member.api_key
    if member.is_local:
        path = LLAMA_SERVER_PATH if member.is_batching else PROBE_PATH
        result = probe(member.base_url, timeout_s, path, api_key=key)
    else:
        result = probe_remote(member.base_url, timeout_s, key)
        if result.ok and member.slots is None and member.state != states.READY:
            result = with_props(result, member.base_url, timeout_s, key)
    if result.ok and (member.is_batching or result.slots is not None):  # a llama-server, known or just found
        series = read_engine_series(member.base_url, timeout_s, key)
        result = ProbeResult(result.ok, result.elapsed_s, result.error, result.status, result.slots, series)
    return result


def probe_remote(base_url: str, timeout_s: float, api_key: str) -> ProbeResult:
    result = ProbeResult(False, 0.0, "no probe path")
    for path in REMOTE_PATHS:
        result = probe(base_url, timeout_s, path, api_key=api_key)
        if result.status != 404:
            break
    return result


def with_props(result: ProbeResult, base_url: str, timeout_s: float, api_key: str) -> ProbeResult:
    """The probe's result with a remote llama-server's slots from /props. Its /health needs
    no key, so this is also where a missing or wrong key shows, before any request fails."""
    try:
        props = _get_json(base_url + "/props", timeout_s, api_key, MAX_PROPS_BYTES)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            error = f"HTTP {exc.code} from /props: the member refused the API key; set the member's key"
            return ProbeResult(False, result.elapsed_s, error, exc.code)
        return result  # not a llama-server: its slots are the operator's to set
    except (OSError, ValueError, RecursionError):  # hostile or broken JSON included
        return result
    slots = props.get("total_slots") if isinstance(props, dict) else None
    if not isinstance(slots, int) or isinstance(slots, bool) or not 1 <= slots <= 4096:
        return result
    return ProbeResult(result.ok, result.elapsed_s, result.error, result.status, slots)


def read_engine_series(base_url: str, timeout_s: float, api_key: str) -> dict[str, float]:
    """llama-server's own counters from its /metrics (started with --metrics); {} where absent."""
    try:
        with urllib.request.urlopen(_request(base_url + "/metrics", api_key), timeout=timeout_s) as response:
            text = response.read(MAX_METRICS_BYTES).decode(errors="replace")
    except (OSError, ValueError):
        return {}
    series = {}
    for name, value in ENGINE_SERIES.findall(text):
        try:
            series[name] = float(value)
        except ValueError:
            continue
    return series


def _get_json(url: str, timeout_s: float, api_key: str, limit: int):
    with urllib.request.urlopen(_request(url, api_key), timeout=timeout_s) as response:
        return json.loads(response.read(limit))


def _request(url: str, api_key: str) -> urllib.request.Request:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return urllib.request.Request(url, headers=headers)
