"""Tier stickiness within an agent session, and the prompt-caching break-even for stepping down.

Provider prompt caches are per model. In an agent session most input tokens are cache reads at
about a tenth of the input price, so moving a session to another model re-writes its whole cached
prefix there. A session therefore escalates at once (quality first) but steps down only when the
expected saving over its remaining turns pays for that re-write.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from engine.stages.tier.policy import TierPrice, TierSessionSection


@dataclass(slots=True)
class SessionState:
    tier: str
    turns: int
    last_seen: float
    escalated: bool = False  # the session moved to a stronger tier at least once


class TierSessions:
    """The tier of each live agent session, keyed by (team, session_id), in bounded memory.

    Least recently used sessions are evicted past `max_sessions`; a session idle longer than
    `idle_ttl` seconds is forgotten. Safe to share between threads.
    """

    def __init__(self, max_sessions: int = 10_000, idle_ttl: float = 6 * 3600.0, clock: Callable[[], float] = time.monotonic):
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
        self.max_sessions = max_sessions
        self.idle_ttl = idle_ttl
        self._clock = clock
        self._states: OrderedDict[tuple[str, str], SessionState] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._states)

    def configure(self, max_sessions: int, idle_ttl: float) -> None:
        """Apply new bounds (after a policy reload); evicts at once if the new maximum is smaller."""
        with self._lock:
            self.max_sessions = max(1, max_sessions)
            self.idle_ttl = idle_ttl
            self._evict_overflow()

    def get(self, team: str, session_id: str) -> SessionState | None:
        """Return the session's state, or None when it is unknown or idle past the TTL."""
        key = (team, session_id)
        now = self._clock()
        with self._lock:
            state = self._states.get(key)
            if state is None:
                return None
            if now - state.last_seen > self.idle_ttl:
                del self._states[key]
                return None
            return SessionState(state.tier, state.turns, state.last_seen, state.escalated)

    def record(self, team: str, session_id: str, tier: str, *, escalated: bool = False) -> None:
        """Store the tier a session's request was sent to, and mark the session as most recently used.

        `escalated` marks a request that moved the session to a stronger tier, and the session keeps that mark.
        """
        key = (team, session_id)
        now = self._clock()
        with self._lock:
            state = self._states.pop(key, None)
            fresh = state is None or now - state.last_seen > self.idle_ttl
            turns = 1 if fresh else state.turns + 1
            self._states[key] = SessionState(tier, turns, now, escalated or (not fresh and state.escalated))
            self._evict_overflow()

    def _evict_overflow(self) -> None:
        while len(self._states) > self.max_sessions:
            self._states.popitem(last=False)


@dataclass(frozen=True, slots=True)
class StepDown:
    """The break-even estimate behind a step-down decision, in the price unit of `tier_session.prices`."""

    cost_stay: float
    cost_switch: float

    @property
    def saving(self) -> float:
        return self.cost_stay - self.cost_switch


def step_down_estimate(
    settings: TierSessionSection,
    tier_names: list[str],
    current: str,
    proposed: str,
    input_tokens: float,
    return_risk: float = 0.0,
) -> StepDown:
    """Estimate the cost of the session's remaining turns on `current` and, after a switch, on `proposed`.

    Staying reads the cached prefix every turn. Switching writes the prefix once on the other model,
    then reads it there. Output tokens are never cached, so a cheaper model saves on them every turn.
    With `return_risk`, switching also bears that share of writing the prefix on `current` again,
    for the case that the session escalates back.
    """
    turns = settings.remaining_turns
    output = settings.output_tokens_per_turn
    stay = _price(settings, tier_names, current)
    move = _price(settings, tier_names, proposed)

    cost_stay = turns * (input_tokens * stay.input * settings.cache_read + output * stay.output)
    cost_switch = (
        input_tokens * move.input * settings.cache_write
        + max(turns - 1.0, 0.0) * input_tokens * move.input * settings.cache_read
        + turns * output * move.output
        + return_risk * input_tokens * stay.input * settings.cache_write
    )
    return StepDown(cost_stay=cost_stay, cost_switch=cost_switch)


def should_step_down(estimate: StepDown, settings: TierSessionSection) -> bool:
    return estimate.saving > settings.min_saving * estimate.cost_stay


def _price(settings: TierSessionSection, tier_names: list[str], tier: str) -> TierPrice:
    price = settings.prices.get(tier)
    if price is not None:
        return price
    # Relative prices: the cheapest tier costs 1 and each next one `price_ratio` times more. Output
    # costs five times the input price, as in Anthropic's and OpenAI's list prices of 2025.
    relative = settings.price_ratio ** tier_names.index(tier)
    return TierPrice(input=relative, output=5.0 * relative)
