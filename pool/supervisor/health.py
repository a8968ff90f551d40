"""Active health checks.

llama-cpp-python's server has no /health, and GET /v1/models takes the model's lock: on a
busy member it waits behind the generation, and with interrupts on it cuts the running
stream short. FastAPI's own /openapi.json takes no lock and answers at once even while the
member generates, so a busy member is never taken for a sick one.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass

PROBE_PATH = "/openapi.json"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    elapsed_s: float
    error: str = ""


def probe(base_url: str, timeout_s: float, path: str = PROBE_PATH) -> ProbeResult:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(base_url + path, timeout=timeout_s) as response:
            response.read(1)
            ok, error = 200 <= response.status < 300, f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        ok, error = False, f"HTTP {exc.code} from {path}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        ok, error = False, f"no answer on {path}: {reason}"
    except ValueError as exc:  # a malformed URL
        ok, error = False, str(exc)
    return ProbeResult(ok, time.monotonic() - started, "" if ok else error)
