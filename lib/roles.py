"""Roles and what they may do: viewer < operator < admin."""

from __future__ import annotations

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
