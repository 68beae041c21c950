"""Sign-in, sign-out, revocation and time passing in any order: an identity is let in exactly when it is younger
than the maximum age and issued no earlier than the person's last sign-out or revocation (a model says which)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import text

from lib.errors import InputError
from lib.roles import Actor
from lib.sessions import record_seen, revoke_sessions, session_problem, sign_out

PEOPLE = ("anna@bmc.dk", "peter@partner.dk")
MAX_AGE_HOURS = 1
START = 1_800_000_000  # epoch seconds; the ID token's iat is whole seconds


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


class Sessions(RuleBasedStateMachine):
    identities = Bundle("identities")

    def __init__(self, engine):
        super().__init__()
        self.engine = engine
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM sign_ins"))
        self.clock = START
        self.not_before: dict[str, int] = {}  # the model: per person, identities issued before this are refused
        self.seen: set[str] = set()
        self.held: list[tuple[str, int]] = []

    @rule(target=identities, person=st.sampled_from(PEOPLE))
    def sign_in(self, person):
        record_seen(self.engine, person, "operator", "default", now=at(self.clock))
        self.seen.add(person)
        self.held.append((person, self.clock))
        return person, self.clock

    @rule(seconds=st.integers(0, 2000))
    def time_passes(self, seconds):
        self.clock += seconds

    @rule(identity=identities)
    def sign_out(self, identity):
        person, issued = identity
        sign_out(self.engine, Actor(person, "operator", "oidc"), at(issued), now=at(self.clock))
        self.not_before[person] = max(self.not_before.get(person, 0), self.clock, issued + 1)

    @rule(person=st.sampled_from(PEOPLE))
    def revoke(self, person):
        admin = Actor("boss@bmc.dk", "admin", "oidc")
        if person not in self.seen:
            with pytest.raises(InputError, match="no sign-in recorded"):
                revoke_sessions(self.engine, person, admin, now=at(self.clock))
            return
        revoke_sessions(self.engine, person, admin, now=at(self.clock))
        self.not_before[person] = max(self.not_before.get(person, 0), self.clock)

    @invariant()
    def each_identity_is_let_in_exactly_when_the_model_says(self):
        for person, issued in self.held:
            expected = self.clock - issued <= MAX_AGE_HOURS * 3600 and issued >= self.not_before.get(person, 0)
            problem = session_problem(self.engine, person, at(issued), MAX_AGE_HOURS, now=at(self.clock))
            assert (problem is None) is expected, (person, issued, self.clock, self.not_before, problem)


def test_sessions_in_any_order(engine):
    run_state_machine_as_test(lambda: Sessions(engine),
                              settings=settings(max_examples=25, stateful_step_count=15, deadline=None,
                                                derandomize=True))
