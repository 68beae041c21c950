"""Roles and what they may do: viewer < operator < admin."""

from __future__ import annotations

from dataclasses import dataclass

from lib.errors import NotAllowed

ROLES = ("viewer", "operator", "admin")


def role_rank(role: str) -> int:
    try:
        return ROLES.index(role)
    except ValueError:
        return -1


def has_role(role: str, needed: str) -> bool:
    return role_rank(role) >= role_rank(needed)


def require_role(role: str, needed: str, action: str) -> None:
    """Raise NotAllowed (nothing written) when `role` is below `needed`."""
    if not has_role(role, needed):
        raise NotAllowed(f"your role '{role}' may not {action}; it needs the '{needed}' role")


def _matches(email: str, patterns: str) -> bool:
    """`patterns` is a comma list of addresses (anna@bmc.dk) and domains (@bmc.dk or bmc.dk)."""
    email = email.strip().lower()
    domain = email.rpartition("@")[2]
    for raw in patterns.split(","):
        pattern = raw.strip().lower()
        if not pattern:
            continue
        if pattern == email or pattern.lstrip("@") == domain and "@" not in pattern.lstrip("@"):
            return True
    return False


def role_for_email(email: str | None, *, admins: str, operators: str, viewers: str = "", default: str = "viewer") -> str:
    """The highest role whose list names the address or its domain; else `default`."""
    if not email:
        return default if default in ROLES else "viewer"
    for role, patterns in (("admin", admins), ("operator", operators), ("viewer", viewers)):
        if _matches(email, patterns):
            return role
    return default if default in ROLES else "viewer"


@dataclass(frozen=True)
class Actor:
    """Who is acting: the signed-in e-mail (or the CLI / local user) and their role."""

    email: str
    role: str
    mode: str = "local"  # "oidc" when signed in, "local" without auth, "cli" from manage.py

    def can(self, needed: str) -> bool:
        return has_role(self.role, needed)


def actor_for_email(email: str | None, mode: str = "oidc") -> Actor:
    from lib.config import get_settings

    s = get_settings()
    role = role_for_email(email, admins=s.hub_admins, operators=s.hub_operators, viewers=s.hub_viewers,
                          default=s.default_role)
    return Actor(email or "unknown", role, mode)


def cli_actor() -> Actor:
    from lib.config import get_settings

    s = get_settings()
    return Actor(s.hub_cli_user, s.hub_cli_role if s.hub_cli_role in ROLES else "viewer", "cli")
