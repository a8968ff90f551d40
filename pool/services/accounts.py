"""Operators' accounts as the app itself makes them (the first run's admin)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction


def create_first_admin(username: str, password: str) -> bool:
    """The first superuser; False where another process starting beside this one made it first."""
    try:
        with transaction.atomic():
            get_user_model().objects.create_superuser(username, "", password)
    except IntegrityError:
        return False
    return True
