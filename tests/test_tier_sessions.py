"""TierSessions: bounded memory of each agent session's tier (LRU size and idle TTL)."""

from __future__ import annotations

import pytest

from engine.stages.tier.sessions import TierSessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_records_and_counts_turns():
    sessions = TierSessions()
    sessions.record("team", "s", "fast")
    sessions.record("team", "s", "strong")
    state = sessions.get("team", "s")
    assert state is not None
    assert (state.tier, state.turns) == ("strong", 2)


def test_unknown_session_is_none():
    assert TierSessions().get("team", "missing") is None


def test_lru_bound_evicts_least_recently_used():
    sessions = TierSessions(max_sessions=3)
    for name in ("a", "b", "c"):
        sessions.record("t", name, "fast")
    sessions.record("t", "a", "strong")  # a becomes the most recently used
    sessions.record("t", "d", "fast")
    assert len(sessions) == 3
    assert sessions.get("t", "b") is None
    assert sessions.get("t", "a").tier == "strong"
    assert sessions.get("t", "d") is not None


def test_idle_session_is_forgotten():
    clock = Clock()
    sessions = TierSessions(idle_ttl=60.0, clock=clock)
    sessions.record("t", "s", "strong")
    clock.now += 59
    assert sessions.get("t", "s") is not None
    clock.now += 2
    assert sessions.get("t", "s") is None
    assert len(sessions) == 0


def test_idle_session_restarts_turn_count():
    clock = Clock()
    sessions = TierSessions(idle_ttl=10.0, clock=clock)
    sessions.record("t", "s", "strong")
    sessions.record("t", "s", "strong")
    clock.now += 11
    sessions.record("t", "s", "fast")
    assert sessions.get("t", "s").turns == 1


def test_configure_shrinks_at_once():
    sessions = TierSessions(max_sessions=10)
    for index in range(10):
        sessions.record("t", str(index), "fast")
    sessions.configure(max_sessions=4, idle_ttl=60.0)
    assert len(sessions) == 4
    assert sessions.get("t", "9") is not None
    assert sessions.get("t", "0") is None


def test_max_sessions_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        TierSessions(max_sessions=0)


def test_returned_state_is_a_copy():
    sessions = TierSessions()
    sessions.record("t", "s", "fast")
    state = sessions.get("t", "s")
    state.tier = "strong"
    assert sessions.get("t", "s").tier == "fast"
