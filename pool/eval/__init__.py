"""The built-in accuracy check: a shipped problem set, answers checked exactly, runs stored."""
