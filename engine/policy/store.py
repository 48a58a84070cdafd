"""The active policy set, swapped atomically on a valid reload, and the file watcher that reloads it."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from engine.policy.errors import PolicyError, PolicyIssue
from engine.policy.loader import PolicySet, load_policy_set

log = logging.getLogger(__name__)

# watchfiles groups the events of one save (editors write, rename and chmod) within this window.
WATCH_DEBOUNCE_MS = 300


@dataclass(frozen=True)
class ReloadError:
    at: float  # unix time
    issues: list[str]


class PolicyStore:
    """Holds the active `PolicySet`. Readers take `store.active` once per request and keep it, so a
    request in flight finishes under the policy it started with even if a reload happens meanwhile."""

    def __init__(self, directory: str | Path, *, bound_to_loopback: bool = True):
        self.directory = Path(directory)
        self.bound_to_loopback = bound_to_loopback
        initial = load_policy_set(self.directory)
        self._check_auth(initial)
        self.active: PolicySet = initial
        self.loaded_at = time.time()
        self.last_error: ReloadError | None = None
        self.reloads = 0
        self._lock = asyncio.Lock()

    def reload(self) -> bool:
        """Load the folder off to the side; replace the active set only if all of it is valid."""
        try:
            candidate = load_policy_set(self.directory)
            self._check_auth(candidate)
        except PolicyError as error:
            self.last_error = ReloadError(time.time(), [str(issue) for issue in error.issues])
            for issue in error.issues:
                log.error("policy reload rejected, the last good policy keeps serving: %s", issue)
            return False
        previous = self.active.version
        self.active = candidate
        self.loaded_at = time.time()
        self.last_error = None
        self.reloads += 1
        for warning in candidate.warnings:
            log.warning("policy: %s", warning)
        if candidate.version != previous:
            log.info("policy reloaded: version %s -> %s (%d files)", previous, candidate.version, len(candidate.files))
        return True

    def _check_auth(self, candidate: PolicySet) -> None:
        if candidate.base.auth == "none" and not self.bound_to_loopback:
            raise PolicyError([PolicyIssue(candidate.files[0] if candidate.files else "default.yaml", 1, 1, "auth",
                                           "`auth: none` is accepted only while leangate listens on loopback; "
                                           "set `auth: keys` and list gateway keys")])

    async def reload_async(self) -> bool:
        async with self._lock:
            return await asyncio.to_thread(self.reload)

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload on every change below the policy folder until `stop` is set."""
        from watchfiles import awatch

        log.info("watching %s for policy changes", self.directory)
        try:
            async for changes in awatch(self.directory, stop_event=stop, debounce=WATCH_DEBOUNCE_MS, step=50,
                                        recursive=True, ignore_permission_denied=True):
                paths = sorted({Path(path).name for _, path in changes})
                log.info("policy files changed: %s", ", ".join(paths))
                await self.reload_async()
        except Exception:  # the watcher must never take the gateway down; reloads still work by API
            log.exception("policy watcher stopped; POST /admin/reload still reloads")
