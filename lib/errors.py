"""The failure classes every command maps to an exit code (see docs/interface in the README)."""

from __future__ import annotations


class HubError(Exception):
    """Anything the product reports to a user; exit code 1 unless a subclass says otherwise."""

    exit_code = 1


class InputError(HubError):
    """Bad input or configuration: one line for the user, nothing written (exit 2)."""

    exit_code = 2


class ConfigError(InputError):
    """A setting is missing or unusable (exit 2)."""


class NotAllowed(InputError):
    """The acting user's role does not allow this write (exit 2)."""


class DatabaseLost(HubError):
    """The database connection was lost mid-job: what was committed before it is kept and said (exit 1)."""


class ServiceError(HubError):
    """An outside service failed or refused: network, authentication, quota, ban (exit 3)."""

    exit_code = 3


class ServiceAuthError(ServiceError):
    """The service refused our credentials."""


class ServiceQuotaError(ServiceError):
    """Quota exhausted, rate limited past our retries, or banned."""


class ServiceUnavailable(ServiceError):
    """Network failure, timeout, or a 5xx that retries did not cure."""


class RowError(HubError):
    """One row or record failed (bad value, deleted upstream, constraint): skip it, report it, go on."""

    def __init__(self, message: str, *, key: str | int | None = None):
        super().__init__(message)
        self.key = key


class Terminated(BaseException):
    """SIGTERM turned into an exception (manage.py installs the handler): every run closes as failed on the way out."""
