"""wrk (Debian's), driven with a Lua script that posts a JSON body and also collects the
status codes and the gateway's X-Vibeadmin-Overhead-Ms header of every response; or,
for the CPU counters, one that stops after a fixed number of responses."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

REQUEST = r"""
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
%(auth)s
"""

SCRIPT = (
    REQUEST
    + r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) overheads = {}; statuses = {}; n = 0 end
function response(status, headers, body)
  local s = tostring(status)
  statuses[s] = (statuses[s] or 0) + 1
  local o = headers["x-vibeadmin-overhead-ms"] or headers["X-Vibeadmin-Overhead-Ms"]
  if o then n = n + 1; overheads[n] = tonumber(o) end
end
function done(summary, latency, requests)
  local all, codes = {}, {}
  for _, t in ipairs(threads) do
    for _, v in ipairs(t:get("overheads")) do all[#all + 1] = v end
    for k, v in pairs(t:get("statuses")) do codes[k] = (codes[k] or 0) + v end
  end
  table.sort(all)
  local function pct(p) if #all == 0 then return -1 end return all[math.max(1, math.ceil(#all * p / 100))] end
  local parts = {}
  for k, v in pairs(codes) do parts[#parts + 1] = string.format('"%%s": %%d', k, v) end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "socket_errors": %%d, "statuses": {%%s}, "overhead_ms": {"n": %%d, "p50": %%.3f, "p99": %%.3f}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout,
    table.concat(parts, ", "), #all, pct(50), pct(99)))
end
"""
)

# One thread counts every response, so the process can end at exactly `limit` of them
# (wrk itself only stops at its -d time, even when a thread stops early).
COUNTED = (
    REQUEST
    + r"""
local limit, total, statuses = %(limit)d, 0, {}
function response(status, headers, body)
  total = total + 1
  local s = tostring(status)
  statuses[s] = (statuses[s] or 0) + 1
  if total >= limit then
    local parts = {}
    for k, v in pairs(statuses) do parts[#parts + 1] = string.format('"%%s": %%d', k, v) end
    io.write(string.format('BENCHCOUNT {"requests": %%d, "statuses": {%%s}}\n', total, table.concat(parts, ", ")))
    io.flush()
    os.exit(0)
  end
end
"""
)


def available() -> bool:
    return shutil.which("wrk") is not None


def run(
    url: str, body: dict, *, connections: int, duration_s: float, key: str = "", threads: int = 1
) -> dict:
    """One wrk run; latencies in milliseconds, throughput in requests per second."""
    script = SCRIPT % {"body": json.dumps(body), "auth": _auth(key)}
    raw = _wrk(script, url, "BENCHJSON", connections=connections, duration_s=duration_s, threads=threads)
    seconds = raw["duration_us"] / 1e6
    good = raw["statuses"].get("200", 0)
    overhead = raw["overhead_ms"]
    return {
        "connections": connections,
        "requests": raw["requests"],
        "ok": good,
        "rps": good / seconds if seconds else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "socket_errors": raw["socket_errors"],
        "statuses": raw["statuses"],
        "overhead_header_ms": {"p50": overhead["p50"], "p99": overhead["p99"]} if overhead["n"] else None,
    }


def count(
    url: str, body: dict, *, connections: int, requests: int, key: str = "", limit_s: float = 300
) -> dict:
    """Closed loop until exactly `requests` responses have come back (one wrk thread), then
    stop: the requests still in flight then (connections - 1 at most) are cut off."""
    script = COUNTED % {"body": json.dumps(body), "auth": _auth(key), "limit": requests}
    raw = _wrk(script, url, "BENCHCOUNT", connections=connections, duration_s=limit_s, threads=1)
    return {
        "connections": connections,
        "requests": raw["requests"],
        "ok": raw["statuses"].get("200", 0),
        "statuses": raw["statuses"],
    }


def _auth(key: str) -> str:
    return f'wrk.headers["Authorization"] = "Bearer {key}"' if key else ""


def _wrk(script: str, url: str, marker: str, *, connections: int, duration_s: float, threads: int) -> dict:
    """Run wrk with `script`; the JSON the script printed after `marker`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "post.lua"
        path.write_text(script)
        args = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "--timeout",
            "10s",
            "-s",
            str(path),
            url,
        ]
        out = subprocess.run(args, capture_output=True, text=True, timeout=duration_s + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(marker + " ")), None)
    if line is None:
        raise RuntimeError(
            f"wrk gave no result (within {duration_s:g} s): {out.stdout[-500:]} {out.stderr[-500:]}"
        )
    return json.loads(line[len(marker) + 1 :])
