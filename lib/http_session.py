"""One `requests.Session` per outside service: keep-alive, a timeout on every call, rate-limit-aware retries.

Two layers, each doing what it is good at:
- urllib3's `Retry` (on the adapter) retries connection failures and 500/502/504 a few times with
  jittered exponential backoff, for idempotent methods only (a POST that reached the server may have
  been processed).
- `ServiceSession.request` handles rate limits, which urllib3 cannot: it reads `Retry-After`,
  `X-FloodControl-*` and `X-RateLimit-*`, pauses *before* a request when the window is used up, retries
  429/503 (also a POST: the server said it did not process it) with jittered backoff when no header says
  how long, and spends a per-job wait budget instead of counting tries. Every wait is reported through
  `session.on_wait(seconds, service)` so a job can show "waiting for vTiger's rate limit, 42 s".
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from lib.errors import ConfigError, ServiceError, ServiceQuotaError, ServiceUnavailable

SERVER_ERROR_STATUSES = (500, 502, 504)  # urllib3 Retry, idempotent methods only
LIMIT_STATUSES = (429, 503)  # "not processed, come back later": ServiceSession, every method
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.5  # urllib3 backoff factor for 5xx
DEFAULT_WAIT_BUDGET = 1800.0  # HTTP_WAIT_BUDGET_SECONDS
LIMIT_BACKOFF = 1.0  # first wait for a 429/503 that says nothing about how long; doubles, with jitter
LIMIT_BACKOFF_CAP = 60.0  # most per-minute windows have refilled after this
MAX_LIMIT_ATTEMPTS = 200  # a guard against a server that keeps asking for zero-second waits
WAIT_REPORT_EVERY = 5.0  # seconds between on_wait reports during one long wait
EPOCH_THRESHOLD = 1_000_000_000  # a Reset value above this is a Unix time, below it a number of seconds

WaitCallback = Callable[[float, str], None]
log = logging.getLogger("hub.http")


class ServiceNotFound(ServiceError):
    """The record asked for does not exist at the service."""


class ServiceTimeout(ServiceUnavailable):
    """No answer within the timeout (a caller may retry with a smaller request)."""


def _header(response: requests.Response, *names: str) -> str | None:
    for name in names:
        value = response.headers.get(name)
        if value not in (None, ""):
            return value
    return None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _daily_limit_used_up(response: requests.Response) -> bool:
    """vTiger Cloud's rolling daily limit is spent: `X-RateLimit-Remaining: 0` beside its `X-RateLimit-DailyLimit`,
    with no reset time, so no wait within a job's budget would help."""
    return (response.status_code == 429 and _header(response, "X-RateLimit-DailyLimit") is not None
            and _number(_header(response, "X-RateLimit-Remaining")) == 0
            and _header(response, "X-RateLimit-Reset") is None)


class ServiceSession(requests.Session):
    """A Session with a default timeout that paces itself by the service's rate-limit headers.

    `wait_budget` seconds of waiting are allowed over the session's life (one job); a wait that does not
    fit is not started and the refusal is returned to the caller. `sleep` and `clock` are injectable.
    """

    def __init__(
        self,
        timeout: float,
        *,
        service: str = "",
        wait_budget: float = DEFAULT_WAIT_BUDGET,
        limit_backoff: float = LIMIT_BACKOFF,
        limit_backoff_cap: float = LIMIT_BACKOFF_CAP,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.timeout = timeout
        self.service = service
        self.wait_budget = max(0.0, float(wait_budget))
        self.limit_backoff = limit_backoff
        self.limit_backoff_cap = limit_backoff_cap
        self.on_wait: WaitCallback | None = None
        self.waited = 0.0  # seconds spent waiting for rate limits so far
        self.waits = 0
        self.sent = 0  # requests that went out, urllib3's retries included
        self.gave_up: str | None = None  # why the last refusal was passed on instead of waited out
        self._sleep, self._clock, self._wall = sleep, clock, wall_clock
        self._not_before = 0.0  # clock time the window reopens, from X-FloodControl-* / X-RateLimit-*
        self._jitter = random.Random()

    @property
    def budget_left(self) -> float:
        return max(0.0, self.wait_budget - self.waited)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        self.gave_up = None
        attempt = 0
        while True:
            pause = self._not_before - self._clock()
            if pause > 0 and pause <= self.budget_left:
                self._wait(pause)
            try:
                response = super().request(method, url, *args, **kwargs)
            except requests.RequestException:
                self.sent += 1
                raise
            history = getattr(getattr(response.raw, "retries", None), "history", None) or ()
            self.sent += 1 + len(history)
            self._note_window(response)
            if response.status_code not in LIMIT_STATUSES:
                return response
            wait = self._limit_wait(response, attempt)
            if _daily_limit_used_up(response):
                self.gave_up = "the daily request limit is used up (X-RateLimit-Remaining: 0); it frees up over 24 h"
                return response
            if self.wait_budget <= 0 or wait > self.budget_left or attempt >= MAX_LIMIT_ATTEMPTS:
                if attempt >= MAX_LIMIT_ATTEMPTS:
                    self.gave_up = f"refused {attempt + 1} times in a row"
                elif self.wait_budget <= 0:
                    self.gave_up = "this call does not wait for rate limits"
                else:
                    self.gave_up = f"asked to wait {wait:.0f} s with {self.budget_left:.0f} s of the wait budget left"
                return response
            response.close()
            self._wait(wait)
            attempt += 1

    def limit_note(self) -> str:
        """A clause for an error message: how long we waited and why we stopped."""
        parts = []
        if self.waited:
            parts.append(f"waited {self.waited:.0f} s in total")
        if self.gave_up:
            parts.append(self.gave_up)
        if not parts:
            return ""
        return " (" + "; ".join(parts) + f"; the wait budget is HTTP_WAIT_BUDGET_SECONDS={self.wait_budget:g})"

    # internals
    def _limit_wait(self, response: requests.Response, attempt: int) -> float:
        """Seconds to wait before retrying a 429/503: Retry-After, else the window's reset, else backoff.

        A header saying "0" again after a retry gets the backoff's lower bound, so we never hammer."""
        told: float | None = None
        retry_after = _header(response, "Retry-After")
        if retry_after is not None:
            try:
                told = max(0.0, Retry().parse_retry_after(retry_after.strip()))
            except InvalidHeader:
                pass  # unreadable: fall through to the window headers or backoff
        if told is None:
            told = self._reset_seconds(response)
        backoff = min(self.limit_backoff_cap, self.limit_backoff * (2 ** attempt)) / 2
        if told is not None:
            return max(told, backoff) if attempt else told
        return backoff + self._jitter.uniform(0, backoff)

    def _reset_seconds(self, response: requests.Response) -> float | None:
        value = _number(_header(response, "X-FloodControl-Reset", "X-RateLimit-Reset", "RateLimit-Reset"))
        if value is None:
            return None
        if value > EPOCH_THRESHOLD:
            value -= self._wall()
        return max(0.0, value)

    def _note_window(self, response: requests.Response) -> None:
        """Remember when the window reopens once it is used up, so the next call waits instead of being refused."""
        remaining = _number(_header(response, "X-FloodControl-Remaining", "X-RateLimit-Remaining",
                                    "RateLimit-Remaining"))
        if remaining is None or remaining > 0:
            return
        reset = self._reset_seconds(response)
        if reset is not None:
            self._not_before = self._clock() + reset

    def _wait(self, seconds: float) -> None:
        """Sleep `seconds`, reporting the time left through on_wait every few seconds."""
        self.waits += 1
        # one line per wait on stderr (the CLI shows it; pages get on_wait), with the budget it spends
        log.info("waiting for a rate limit", extra={"service": self.service or "the service",
                                                    "seconds": round(seconds, 1), "budget_left": round(self.budget_left)})
        left = seconds
        while left > 0:
            if self.on_wait is not None:
                self.on_wait(left, self.service or "the service")
            step = min(left, WAIT_REPORT_EVERY)
            self._sleep(step)
            self.waited += step
            left -= step


def make_session(
    *,
    timeout: float = 20.0,
    user_agent: str | None = None,
    retries: int = DEFAULT_RETRIES,
    read_retries: int | None = None,
    backoff: float = DEFAULT_BACKOFF,
    retry_methods: Iterable[str] = ("GET", "HEAD", "PUT", "DELETE", "OPTIONS"),
    wait_budget: float | None = None,
    service: str = "",
    limit_backoff: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ServiceSession:
    """A ServiceSession; urllib3 retries connection failures and 500/502/504 `retries` times with jittered
    exponential backoff, for `retry_methods` only. `read_retries` (default `retries`) covers read timeouts.
    `wait_budget` defaults to DEFAULT_WAIT_BUDGET, or to 0 with `retries=0`: "no retries" means none at all.

    `backoff=0` also makes the 429/503 backoff zero (tests); `sleep`/`clock` let a test run rate-limit waits on
    a fake clock. The final response is returned, not raised, so each client can turn the service's own error
    body into a message.
    """
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries if read_retries is None else read_retries,
        status=retries,
        other=0,
        backoff_factor=backoff,
        backoff_jitter=backoff / 2 if backoff else 0.0,
        backoff_max=30.0,
        status_forcelist=SERVER_ERROR_STATUSES,
        allowed_methods=frozenset(m.upper() for m in retry_methods),
        respect_retry_after_header=False,  # 429/503 and their headers belong to ServiceSession
        raise_on_status=False,
        raise_on_redirect=False,
    )
    if wait_budget is None:
        wait_budget = DEFAULT_WAIT_BUDGET if retries else 0.0
    session = ServiceSession(timeout, service=service, wait_budget=wait_budget,
                             limit_backoff=(LIMIT_BACKOFF if backoff else 0.0) if limit_backoff is None
                             else limit_backoff, sleep=sleep, clock=clock)
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=8)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if user_agent:
        session.headers["User-Agent"] = user_agent
    return session


def label_session(session: requests.Session, service: str) -> None:
    """Name the service on a ServiceSession that was built without one (used in wait reports)."""
    if isinstance(session, ServiceSession) and not session.service:
        session.service = service


def limit_note(session: requests.Session) -> str:
    return session.limit_note() if isinstance(session, ServiceSession) else ""


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
        raise ServiceTimeout(f"{service}: no answer within the timeout") from None
    except requests.exceptions.RetryError:
        raise ServiceQuotaError(f"{service}: still refused after retries") from None
    except UnicodeEncodeError as exc:
        raise ConfigError(f"{service}: a header value has a character that HTTP cannot carry "
                          f"({exc.object[exc.start:exc.end]!r}); only Latin-1 characters can be sent") from None
    except requests.ConnectionError as exc:
        reason = redact(_root_reason(exc), secrets)
        if "Timeout" in reason:
            raise ServiceTimeout(f"{service}: no answer within the timeout") from None
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



def wait_message(seconds: float, service: str) -> str:
    """The progress line for a rate-limit wait: "waiting for vTiger's rate limit, 42 s"."""
    return f"waiting for {service}'s rate limit, {max(1, round(seconds))} s"
