"""Who may do what on the dashboard: three roles, each a Django group holding the pool's
permissions. A viewer sees every page and its live data; an operator also changes the pool
(members, routing, alerts, autoscaling, rollouts, evals); an admin also manages API keys,
users and roles. A superuser is an admin whatever its groups.

The permissions are PoolSettings' own (its Meta); views ask for them through the
dashboard's `role_required`, templates through Django's `perms` (`perms.pool.operate`)."""

from __future__ import annotations

from typing import Any

VIEW = "pool.view_dashboard"
OPERATE = "pool.operate"
ADMINISTER = "pool.administer"
# (codename, description) for PoolSettings.Meta.permissions and the migration.
PERMISSIONS = [
    ("view_dashboard", "See every dashboard page and its live data"),
    ("operate", "Change the pool: members, routing, alerts, autoscaling, rollouts, evals"),
    ("administer", "Manage API keys, users and roles"),
]

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
# Each role's permissions, the least first: a user's role is the last whose group it is in.
ROLES: dict[str, tuple[str, ...]] = {
    VIEWER: (VIEW,),
    OPERATOR: (VIEW, OPERATE),
    ADMIN: (VIEW, OPERATE, ADMINISTER),
}
ROLE_CHOICES = [
    (VIEWER, "viewer: every page, no action"),
    (OPERATOR, "operator: also members, routing, alerts, autoscaling, rollouts, evals"),
    (ADMIN, "admin: also API keys, users and roles"),
]
NO_ROLE = "none"  # a user in no role's group: may not log in to the dashboard


def codename(permission: str) -> str:
    return permission.split(".", 1)[1]


def role_of(user: Any) -> str:
    """The user's role by what it may do (groups or a superuser's all), NO_ROLE if none."""
    if not (user and user.is_authenticated and user.is_active):
        return NO_ROLE
    for role in reversed(ROLES):
        if user.has_perms(ROLES[role]):
            return role
    return NO_ROLE
