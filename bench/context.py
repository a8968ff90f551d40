"""What every benchmark gets: how big to run (smoke, quick, full), where to write, and the
data folders of the servers it starts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bench.server import DataFolders


@dataclass(frozen=True)
class Scale:
    """`factor` multiplies durations and request counts; BENCH_SCALE multiplies it again."""

    name: str
    factor: float
    rounds: int  # side-by-side repetitions where legs are interleaved

    def seconds(self, full: float, least: float = 1.0) -> float:
        return max(least, full * self.factor)

    def count(self, full: int, least: int = 10) -> int:
        return max(least, round(full * self.factor))

    @property
    def smoke(self) -> bool:
        return self.name == "smoke"


SCALES = {"full": Scale("full", 1.0, 2), "quick": Scale("quick", 0.3, 1), "smoke": Scale("smoke", 0.05, 1)}


def scale_for(name: str) -> Scale:
    base = SCALES[name]
    extra = float(os.environ.get("BENCH_SCALE", "1"))
    return Scale(base.name, base.factor * extra, base.rounds)


@dataclass
class Bench:
    scale: Scale
    out: Path
    folders: DataFolders = field(default_factory=DataFolders)
    notes: list[str] = field(default_factory=list)

    def note(self, line: str) -> None:
        print(f"  note: {line}", flush=True)
        self.notes.append(line)
