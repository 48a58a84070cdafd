"""Per-session memory of the tools forwarded so far, bounded in size and idle time."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

SessionKey = tuple[str, str]  # (team, session_id)


class ToolSessions:
    """The tool names forwarded in each agent session, keyed by (team, session_id).

    Provider prompt caching treats the tool list as the start of the cached prefix, so a session's
    kept set may only grow. Memory is bounded: at most `max_sessions` entries, least recently used
    evicted first, and an entry idle for more than `idle_ttl` seconds is forgotten (0 in effect turns
    the memory off). A forgotten session starts again from its next request's class. When that
    changes the tool list, the provider writes the cached prefix again.
    """

    def __init__(self, max_sessions: int = 10_000, idle_ttl: float = 6 * 3600.0, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._entries: OrderedDict[SessionKey, tuple[float, frozenset[str]]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_sessions = 1
        self.idle_ttl = 0.0
        self.configure(max_sessions, idle_ttl)

    def configure(self, max_sessions: int, idle_ttl: float) -> None:
        """Apply new bounds (after a policy reload); shrinking evicts the least recently used sessions."""
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {max_sessions}")
        if idle_ttl < 0:
            raise ValueError(f"idle_ttl must not be negative, got {idle_ttl} seconds")
        with self._lock:
            self.max_sessions = max_sessions
            self.idle_ttl = float(idle_ttl)
            self._evict_over_size()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: SessionKey) -> frozenset[str]:
        """Return the tool names kept so far in the session, or an empty set for a new or expired one."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return frozenset()
            seen_at, names = entry
            if now - seen_at > self.idle_ttl:
                del self._entries[key]
                return frozenset()
            return names

    def add(self, key: SessionKey, names: frozenset[str] | set[str]) -> frozenset[str]:
        """Add tool names to the session's kept set, mark it used now, and return the whole set."""
        now = self._clock()
        with self._lock:
            entry = self._entries.pop(key, None)
            previous = entry[1] if entry is not None and now - entry[0] <= self.idle_ttl else frozenset()
            merged = previous | frozenset(names)
            self._entries[key] = (now, merged)
            self._evict_expired(now)
            self._evict_over_size()
            return merged

    def _evict_over_size(self) -> None:
        while len(self._entries) > self.max_sessions:
            self._entries.popitem(last=False)

    def _evict_expired(self, now: float) -> None:
        # Entries are in order of last use, so expired ones sit at the front.
        while self._entries:
            key, (seen_at, _) = next(iter(self._entries.items()))
            if now - seen_at <= self.idle_ttl:
                break
            del self._entries[key]
