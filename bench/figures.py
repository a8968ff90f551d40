"""Saving a benchmark's figure the same way everywhere."""

from __future__ import annotations

from pathlib import Path


def save(fig, out: Path, name: str) -> str:
    """Lay out, write `out/name` as a PNG, free the figure; returns the file's name."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    return name
