"""Benchmarks and failure drills for vibeadmin: `python -m bench.run` (see BENCHMARKS.md)."""
