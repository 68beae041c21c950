"""Roles and what they may do: viewer < operator < admin; "none" (DEFAULT_ROLE=none) may do nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lib.errors import ConfigError, NotAllowed

ROLES = ("viewer", "operator", "admin")
NO_ROLE = "none"  # signed in, but no list names the person and DEFAULT_ROLE=none: refused everything
DEFAULT_ROLES = (NO_ROLE, *ROLES)


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


def check_default_role(default: str) -> str:
    """DEFAULT_ROLE must be none, viewer, operator or admin; a typo is a configuration error, never a role."""
    value = (default or "").strip().lower()
    if value not in DEFAULT_ROLES:
        raise ConfigError(f"DEFAULT_ROLE must be one of {', '.join(DEFAULT_ROLES)}; got {default!r}")
    return value


def role_for_email(email: str | None, *, admins: str, operators: str, viewers: str = "", default: str = "viewer") -> str:
    """The highest role whose list names the address or its domain; else `default` (which may be "none")."""
    default = check_default_role(default)
    if not email:
        return default
    for role, patterns in (("admin", admins), ("operator", operators), ("viewer", viewers)):
        if _matches(email, patterns):
            return role
    return default


def _claim_true(value: Any) -> bool:
    """JSON true; some providers send the string "true"."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def email_is_verified(claims: Mapping[str, Any], provider: str, trusted_providers: str = "") -> bool:
    """Whether the ID token's e-mail may name a person in the role lists.

    `email_verified: true` (or Entra ID's `xms_edov: true`, "e-mail domain owner verified") verifies it.
    A provider named in `trusted_providers` (AUTH_TRUST_EMAIL_PROVIDERS) is trusted when the token carries
    no email_verified claim at all; an explicit `email_verified: false` is never trusted.
    """
    if "email_verified" in claims:
        return _claim_true(claims.get("email_verified"))
    if _claim_true(claims.get("xms_edov")):
        return True
    trusted = {name.strip().lower() for name in trusted_providers.split(",") if name.strip()}
    return (provider or "default").lower() in trusted


@dataclass(frozen=True)
class Actor:
    """Who is acting: the signed-in e-mail (or the CLI / local user) and their role."""

    email: str
    role: str
    mode: str = "local"  # "oidc" when signed in, "local" without auth, "cli" from manage.py

    def can(self, needed: str) -> bool:
        return has_role(self.role, needed)


def actor_for_email(email: str | None, mode: str = "oidc") -> Actor:
    """The actor for an address the caller has verified (or trusts): the highest listed role, else DEFAULT_ROLE."""
    from lib.config import get_settings

    s = get_settings()
    role = role_for_email(email, admins=s.hub_admins, operators=s.hub_operators, viewers=s.hub_viewers,
                          default=s.default_role)
    return Actor(email or "unknown", role, mode)


def actor_for_identity(claims: Mapping[str, Any]) -> Actor:
    """The actor for a signed-in identity (ID token claims, as `st.user` holds them).

    Only a verified e-mail is looked up in the role lists; an unverified one gets DEFAULT_ROLE and is named
    "ADDRESS (unverified)" everywhere (runs, audit, sessions), so it can never pass for the real owner.
    """
    from lib.config import get_settings

    s = get_settings()
    email = str(claims.get("email") or "").strip().lower()
    if email and email_is_verified(claims, str(claims.get("provider") or "default"), s.auth_trust_email_providers):
        return actor_for_email(email, mode="oidc")
    name = f"{email} (unverified)" if email else f"{claims.get('sub') or 'unknown'} (no e-mail)"
    return Actor(name, check_default_role(s.default_role), "oidc")


def cli_actor() -> Actor:
    from lib.config import get_settings

    s = get_settings()
    return Actor(s.hub_cli_user, s.hub_cli_role if s.hub_cli_role in ROLES else "viewer", "cli")
