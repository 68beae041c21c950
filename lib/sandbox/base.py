"""The HTTP plumbing every simulator shares: a ThreadingHTTPServer in a thread, counters, fault injection."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class SimRequest:
    """One request as the simulator saw it."""

    method: str
    path: str
    query: dict[str, str]  # first value of each query parameter
    headers: dict[str, str]
    body: bytes = b""
    form: dict[str, str] = field(default_factory=dict)  # form-encoded body, first values
    client_ip: str = "127.0.0.1"
    label: str = ""  # what the simulator counted it as (endpoint or operation)

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lower), None)


@dataclass
class SimResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (slept outside the simulator's lock)

    @classmethod
    def json(cls, status: int, data: Any, headers: dict[str, str] | None = None, ascii_only: bool = False):
        body = json.dumps(data, ensure_ascii=ascii_only).encode("utf-8")
        return cls(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/html; charset=utf-8"):
        return cls(status, text.encode("utf-8"), {"Content-Type": content_type})


@dataclass
class Fault:
    """An injected failure: answer `status` (with the protocol's error body) `times` times."""

    status: int
    times: int = 1
    retry_after: float | None = None
    when: Callable[[SimRequest], bool] | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the clients' sessions reuse connections
    disable_nagle_algorithm = True  # headers and body go out in separate writes: without this, 40 ms per reply
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        form: dict[str, str] = {}
        if "application/x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
        request = SimRequest(
            method=self.command, path=parts.path, query=query, headers=dict(self.headers.items()),
            body=body, form=form, client_ip=self.client_address[0],
        )
        response = self.server.sim.dispatch(request)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(response.body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (its timeout): nothing to answer to

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.sim.verbose:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sim: Simulator


class Simulator:
    """Base class: subclasses implement `handle(request)` and `fault_response(fault, request)`.

    Runtime knobs shared by all simulators:
    - `latency` seconds added before every answer;
    - `inject(status, times=1, retry_after=None, when=None)` queues a failure;
    - `requests` (every request seen), `counts` (per endpoint label), `request_count`;
    - `with sim.paused():` holds every answer until the block ends (a test looks elsewhere meanwhile).
    """

    name = "simulator"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> None:
        self.host = host
        self.port = port
        self.verbose = verbose
        self.latency = 0.0
        self.faults: list[Fault] = []
        self.requests: list[SimRequest] = []
        self.counts: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._answering = threading.Condition()
        self._pauses = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> Simulator:
        self._server = _Server((self.host, self.port), _Handler)
        self._server.sim = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"{self.name}-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL a client is configured with."""
        return self.origin

    @contextmanager
    def paused(self) -> Iterator[Simulator]:
        """Hold every request unanswered (and uncounted) until the block ends; then they are answered as usual.

        For tests that start a long job and look at its progress elsewhere while the service "thinks": the
        client's HTTP timeout must outlast the block. Nested and concurrent pauses end with the last one."""
        with self._answering:
            self._pauses += 1
        try:
            yield self
        finally:
            with self._answering:
                self._pauses -= 1
                self._answering.notify_all()

    def _wait_while_paused(self) -> None:
        with self._answering:
            self._answering.wait_for(lambda: self._pauses == 0)

    # counters and faults
    @property
    def request_count(self) -> int:
        return len(self.requests)

    def reset_counters(self) -> None:
        with self._lock:
            self.requests.clear()
            self.counts.clear()

    def inject(
        self,
        status: int,
        times: int = 1,
        retry_after: float | None = None,
        when: Callable[[SimRequest], bool] | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` in the protocol's error shape."""
        with self._lock:
            self.faults.append(Fault(status, times, retry_after, when))

    def _take_fault(self, request: SimRequest) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and (fault.when is None or fault.when(request)):
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def dispatch(self, request: SimRequest) -> SimResponse:
        self._wait_while_paused()
        request.label = self.label(request)
        with self._lock:
            self.requests.append(request)
            self.counts[request.label] += 1
        if self.latency:
            time.sleep(self.latency)
        fault = self._take_fault(request)
        if fault is not None:
            response = self.fault_response(fault, request)
            if fault.retry_after is not None:
                response.headers["Retry-After"] = str(int(fault.retry_after))
            return response
        try:
            with self._lock:
                response = self.handle(request)
        except Exception as exc:  # noqa: BLE001 - a simulator bug must show up as a 500, not a hang
            return SimResponse.text(500, f"simulator error: {type(exc).__name__}: {exc}", "text/plain")
        if response.delay:
            time.sleep(response.delay)
        return response

    # for subclasses
    def label(self, request: SimRequest) -> str:
        return f"{request.method} {request.path}"

    def handle(self, request: SimRequest) -> SimResponse:
        raise NotImplementedError

    def fault_response(self, fault: Fault, request: SimRequest) -> SimResponse:
        return SimResponse.text(fault.status, f"<html><body><h1>{fault.status}</h1></body></html>")
