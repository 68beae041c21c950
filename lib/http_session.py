"""One `requests.Session` per outside service: keep-alive, a timeout on every call, retries with backoff."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from lib.errors import ServiceError, ServiceQuotaError, ServiceUnavailable

RETRY_STATUSES = (429, 500, 502, 503, 504)
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.5
# A Retry-After longer than this is a block, not a hiccup: give up and report instead of sleeping.
MAX_RETRY_AFTER_SECONDS = 30.0


class ServiceNotFound(ServiceError):
    """The record asked for does not exist at the service."""


class _Retry(Retry):
    """urllib3 Retry that gives up (returns the response) when Retry-After asks for too long a wait."""

    give_up_after: float = MAX_RETRY_AFTER_SECONDS

    def new(self, **kw: Any) -> _Retry:
        fresh = super().new(**kw)
        fresh.give_up_after = self.give_up_after
        return fresh

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if response is not None and self.respect_retry_after_header:
            wait = self.get_retry_after(response)
            if wait is not None and wait > self.give_up_after:
                raise MaxRetryError(_pool, url, "Retry-After too long")
        return super().increment(method, url, response, error, _pool, _stacktrace)


class TimeoutSession(requests.Session):
    """A Session whose every request carries a timeout unless the caller gives one."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def make_session(
    *,
    timeout: float = 20.0,
    user_agent: str | None = None,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    retry_methods: Iterable[str] = ("GET", "HEAD", "PUT", "DELETE", "OPTIONS"),
    max_retry_after: float = MAX_RETRY_AFTER_SECONDS,
) -> TimeoutSession:
    """A Session that retries 429/5xx with exponential backoff, honouring Retry-After up to a cap.

    After the last retry the final response is returned (not raised), so each client can turn
    the service's own error body into a message.
    """
    retry = _Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset(m.upper() for m in retry_methods),
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
    )
    retry.give_up_after = max_retry_after
    session = TimeoutSession(timeout)
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=8)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if user_agent:
        session.headers["User-Agent"] = user_agent
    return session


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every non-empty secret replaced by a mask."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "•••")
    return text


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    service: str,
    secrets: Iterable[str | None] = (),
    **kwargs: Any,
) -> requests.Response:
    """`session.request(...)`, with network failures raised as ServiceUnavailable (secrets redacted)."""
    try:
        return session.request(method, url, **kwargs)
    except requests.Timeout:
        raise ServiceUnavailable(f"{service}: no answer within the timeout") from None
    except requests.exceptions.RetryError:
        raise ServiceQuotaError(f"{service}: still refused after retries") from None
    except requests.ConnectionError as exc:
        reason = redact(_root_reason(exc), secrets)
        if "Timeout" in reason:
            raise ServiceUnavailable(f"{service}: no answer within the timeout") from None
        raise ServiceUnavailable(f"{service}: cannot connect ({reason})") from None
    except requests.RequestException as exc:
        reason = redact(type(exc).__name__, secrets)
        raise ServiceUnavailable(f"{service}: request failed ({reason})") from None


def _root_reason(exc: BaseException) -> str:
    """The innermost cause's class name: says 'refused' or 'name resolution' without echoing the URL."""
    inner: BaseException = exc
    seen = 0
    while seen < 10:
        nxt = getattr(inner, "reason", None) or inner.__cause__ or inner.__context__
        if not isinstance(nxt, BaseException):
            break
        inner = nxt
        seen += 1
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused"
    if "NameResolution" in type(inner).__name__ or "gaierror" in type(inner).__name__:
        return "host name not found"
    return type(inner).__name__


def json_or_none(response: requests.Response) -> Any:
    """The decoded JSON body, or None when the body is empty or not JSON."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None
