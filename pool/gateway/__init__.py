"""The inference gateway: a lean ASGI app in front of the pool (no Django request cycle on
the hot path; see docs/architecture.md). It reads pool state from memory, refreshed from the database."""
