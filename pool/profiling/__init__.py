"""Sizing the pool from measurements on this host: `manage.py pool profile`."""
