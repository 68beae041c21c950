"""ServiceSession under any sequence of answers (Hypothesis): the wait budget holds, a refusal is retried only
when the server said "not processed", window headers pace the next call, and every wait is reported.

The server is a scripted transport adapter (no network), the clock a fake one: the properties are about the
session's decisions, which a real server could only show slowly and never in every order.
"""

from __future__ import annotations

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.adapters import BaseAdapter

from lib.http_session import WAIT_REPORT_EVERY, ServiceSession


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.slept.append(seconds)
        self.now += seconds


class Script(BaseAdapter):
    """Answers from a list, recording when each request arrived; 200 once the list is used up."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]], time: FakeTime) -> None:
        super().__init__()
        self.answers = list(answers)
        self.time = time
        self.arrivals: list[float] = []
        self.served: list[int] = []

    def send(self, request, **kwargs):  # noqa: ANN001 - requests' adapter signature
        self.arrivals.append(self.time.now)
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        self.served.append(status)
        response = requests.Response()
        response.status_code, response.request, response.url = status, request, request.url
        response.headers.update(headers)
        response._content = b"{}"
        return response

    def close(self) -> None:
        pass


seconds = st.integers(min_value=0, max_value=120).map(str)
answer = st.one_of(
    st.tuples(st.just(200), st.fixed_dictionaries({}, optional={"X-FloodControl-Remaining": st.sampled_from(["0", "3"]),
                                                               "X-FloodControl-Reset": seconds})),
    st.tuples(st.sampled_from([429, 503]), st.fixed_dictionaries({}, optional={"Retry-After": seconds,
                                                                               "X-FloodControl-Reset": seconds})),
    st.tuples(st.sampled_from([400, 500]), st.just({})),
)


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(answers=st.lists(answer, max_size=12), budget=st.sampled_from([0.0, 5.0, 90.0, 600.0]),
       method=st.sampled_from(["GET", "POST"]), calls=st.integers(min_value=1, max_value=4))
def test_any_sequence_of_answers(answers, budget, method, calls):
    time = FakeTime()
    script = Script(answers, time)
    session = ServiceSession(5.0, service="vTiger", wait_budget=budget, limit_backoff=1.0,
                             sleep=time.sleep, clock=time.clock, wall_clock=lambda: 1_800_000_000.0)
    session.mount("http://", script)
    reports: list[tuple[float, str]] = []
    session.on_wait = lambda left, service: reports.append((left, service))
    for _ in range(calls):
        sent_before = len(script.arrivals)
        response = session.request(method, "http://crm.example/webservice.php")
        this_call = script.served[sent_before:]
        # sent again only after 429/503 ("not processed"); a 500 to a POST may have been processed: never resent
        assert this_call[-1] == response.status_code and all(s in (429, 503) for s in this_call[:-1])
        if response.status_code in (429, 503):
            assert session.gave_up  # passed on only with a reason the message will show
    refused_then_resent = len(script.arrivals) - calls
    assert refused_then_resent <= sum(1 for status, _ in answers if status in (429, 503))
    assert session.waited <= budget + 1e-9  # the budget holds, whatever the server asks
    assert abs(sum(time.slept) - session.waited) < 1e-9 and all(s <= WAIT_REPORT_EVERY for s in time.slept)
    assert len(reports) == len(time.slept) and all(service == "vTiger" for _, service in reports)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(reset=st.integers(min_value=1, max_value=90), budget=st.sampled_from([30.0, 1800.0]))
def test_a_used_up_window_delays_the_next_call_until_it_resets(reset, budget):
    time = FakeTime()
    script = Script([(200, {"X-FloodControl-Remaining": "0", "X-FloodControl-Reset": str(reset)})], time)
    session = ServiceSession(5.0, wait_budget=budget, sleep=time.sleep, clock=time.clock)
    session.mount("http://", script)
    session.get("http://crm.example/a")
    session.get("http://crm.example/b")
    if reset <= budget:
        assert script.arrivals == [0.0, float(reset)]  # paced: the second call waited for the window
    else:
        assert script.arrivals == [0.0, 0.0] and session.waited == 0  # does not fit: not started
