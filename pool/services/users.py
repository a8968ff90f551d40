"""The dashboard's users and their roles (pool/models/roles.py): created with a password shown
once, a role changed, access taken away. Part of the service layer: each change is recorded
with who made it (audit.py), and no change may leave the dashboard without an admin."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group, Permission
from django.core.exceptions import ValidationError
from django.db import transaction

from pool.models import roles
from pool.services import audit

ROLE_NAMES = (*roles.ROLES, roles.NO_ROLE)


def role_group(role: str) -> Group:
    """The role's group, holding exactly its permissions (made on first use)."""
    group, _ = Group.objects.get_or_create(name=role)
    wanted = Permission.objects.filter(
        content_type__app_label="pool", codename__in=[roles.codename(p) for p in roles.ROLES[role]]
    )
    group.permissions.set(wanted)
    return group


def check_role(role: str) -> None:
    if role not in ROLE_NAMES:
        raise ValueError(f"the role must be one of {', '.join(ROLE_NAMES)}")


def admins_left(without: AbstractUser) -> bool:
    """Whether some other active user is an admin (a superuser, or in the admin group)."""
    others = get_user_model().objects.filter(is_active=True).exclude(pk=without.pk)
    return any(roles.role_of(user) == roles.ADMIN for user in others)


@transaction.atomic
def user_create(*, name: str, role: str, password: str = "") -> tuple[AbstractUser, str]:
    """A dashboard user in `role`; returns the user and its password (generated when none is
    given), which is shown once and stored only as Django's hash."""
    check_role(role)
    User = get_user_model()
    user = User(username=name.strip())
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as exc:
        raise ValueError("; ".join(exc.messages)) from None
    password = password or secrets.token_urlsafe(12)
    user.set_password(password)
    user.save()
    if role != roles.NO_ROLE:
        user.groups.add(role_group(role))
    audit.change(f"user {user.username}", "created", audit.UNSET, f"role {role}")
    return user, password


@transaction.atomic
def user_set_role(*, user: AbstractUser, role: str) -> None:
    """Put the user in `role`'s group only (NO_ROLE: none; it can no longer log in). A
    superuser stays an admin whatever its groups, so its role is not changed here."""
    check_role(role)
    old = roles.role_of(user)
    if user.is_superuser:
        raise ValueError(f"{user.username} is a superuser, an admin whatever its role")
    if old == roles.ADMIN and role != roles.ADMIN and not admins_left(user):
        raise ValueError(f"{user.username} is the last admin: make another admin first")
    user.groups.remove(*Group.objects.filter(name__in=roles.ROLES))
    if role != roles.NO_ROLE:
        user.groups.add(role_group(role))
    # has_perm caches what it read: the next check must see the new groups.
    for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cache, None)
    if old != role:
        audit.change(f"user {user.username}", "role", old, role)
