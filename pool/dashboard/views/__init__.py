"""The operators' dashboard: one module per page, each a few thin function views."""
