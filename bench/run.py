"""Run the benchmarks and drills, write bench/results/*.json and *.png, and regenerate
BENCHMARKS.md.

    python -m bench.run                  # everything (about 15-20 minutes on 2 cores)
    python -m bench.run --quick          # shorter runs, fewer rounds (overhead: still five)
    python -m bench.run --smoke --out /tmp/x   # seconds per benchmark: the harness still works
    python -m bench.run --only overhead,scaling
    python -m bench.run --report-only    # rebuild BENCHMARKS.md from bench/results
    BENCH_SCALE=0.5 python -m bench.run  # scale every duration and request count
    BENCH_CODE=/tmp/before python -m bench.run --only overhead   # serve another checkout's gateway
    python -m bench.run --quick --only engines --model /models/q.gguf --chat-format chatml
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import time
import traceback
from pathlib import Path

from bench import machine, report
from bench.context import Bench, scale_for
from bench.server import MODEL_ENV, served_code, use_model

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BENCHMARKS = (
    "overhead",
    "strategies",
    "scaling",
    "real_model",
    "drills",
    "shared_state",
    "state_drills",
    "fairness",
    "engines",
    "affinity",
)
# Real llama.cpp members take seconds to load and replies seconds to generate on 2 busy
# cores: the smoke run leaves those benchmarks out unless --only names them.
SMOKE_DEFAULT = ("overhead", "strategies", "scaling")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="shorter runs, fewer rounds")
    size.add_argument(
        "--smoke", action="store_true", help="a second or two per benchmark, to test the harness"
    )
    parser.add_argument("--only", default="", help=f"comma-separated, of: {', '.join(BENCHMARKS)}")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for the results (default bench/results)"
    )
    parser.add_argument(
        "--report-only", action="store_true", help="only rebuild BENCHMARKS.md from the results"
    )
    parser.add_argument(
        "--model", type=Path, help="the GGUF the real members serve (default: the default model)"
    )
    parser.add_argument(
        "--chat-format", default="", help="with --model: its chat template's name (chatml for a Qwen2.5 GGUF)"
    )
    args = parser.parse_args(argv)
    if args.model:
        if not args.model.is_file():
            parser.error(f"--model {args.model}: no such file")
        use_model(args.model, args.chat_format)
    if args.report_only:
        write_report(args.out)
        return 0
    scale = scale_for("smoke" if args.smoke else "quick" if args.quick else "full")
    names = [n for n in args.only.split(",") if n] or list(SMOKE_DEFAULT if args.smoke else BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(BENCHMARKS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    # SIGTERM (timeout(1), a cancelled job) unwinds like Ctrl-C: each benchmark's `finally`
    # then stops the servers it started, some of which run in sessions of their own.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    bench = Bench(scale, args.out)
    machine_info = machine.describe()  # before the run loads the machine itself
    started = time.monotonic()
    failed = []
    try:
        for name in names:
            if not run_one(bench, name):
                failed.append(name)
    finally:
        bench.folders.cleanup()
    meta = {
        "scale": scale.name,
        "factor": scale.factor,
        "machine": machine_info,
        "code": served_code(),
        "model": MODEL_ENV.get("VIBEADMIN_MODEL", "the default model"),
        "notes": bench.notes,
        "seconds": round(time.monotonic() - started, 1),
        "ran": names,
        "failed": failed,
    }
    previous = args.out / "run.json"
    if args.only and previous.exists():  # a partial rerun: keep the record of the whole run
        whole = json.loads(previous.read_text())
        whole.setdefault("reruns", []).append(meta)
        meta = whole
    previous.write_text(json.dumps(meta, indent=2))
    target = write_report(args.out)
    print(
        f"done in {meta['seconds']:.0f} s; results in {args.out}, report in {target}"
        + (f"; FAILED: {', '.join(failed)}" if failed else ""),
        flush=True,
    )
    return 1 if failed else 0


def write_report(out: Path) -> Path:
    """BENCHMARKS.md at the root for bench/results, else beside the results."""
    target = ROOT / "BENCHMARKS.md" if out.resolve() == RESULTS.resolve() else out / "BENCHMARKS.md"
    report.write(out, target, [importlib.import_module(f"bench.{n}") for n in BENCHMARKS])
    return target


def run_one(bench: Bench, name: str) -> bool:
    module = importlib.import_module(f"bench.{name}")
    print(f"== {name}", flush=True)
    started = time.monotonic()
    try:
        result = module.run(bench)
    except Exception:
        result = {"name": name, "error": traceback.format_exc()}
        print(result["error"], file=sys.stderr, flush=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["scale"] = bench.scale.name
    if "error" not in result:
        result["plots"] = module.plot(result, bench.out)
        result["goals"] = module.goals(result)
    (bench.out / f"{name}.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"   {name}: {result['seconds']:.0f} s", flush=True)
    return "error" not in result


if __name__ == "__main__":
    sys.exit(main())
