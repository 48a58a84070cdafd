"""Gateway keys: read from `x-api-key`, `Authorization: Bearer` or `api-key`, compared by sha256."""

from __future__ import annotations

import hashlib
import hmac

from engine.policy.loader import BASE_NAME, PolicySet

TEAM_HEADER = "x-leangate-team"


class AuthError(Exception):
    """Raised when a request carries no gateway key, or one the policy does not list."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


def presented_key(headers: dict[str, str]) -> str | None:
    key = headers.get("x-api-key") or headers.get("api-key")
    if key:
        return key.strip()
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def resolve_team(policies: PolicySet, headers: dict[str, str]) -> str:
    """Return the caller's team. With `auth: none` a known key still selects its team, and the
    `x-leangate-team` header may name one; with `auth: keys` only the key decides."""
    key = presented_key(headers)
    entry = policies.gateway_keys.get(key_hash(key)) if key else None
    if policies.base.auth == "none":
        if entry is not None:
            return entry.team
        requested = headers.get(TEAM_HEADER)
        if requested and requested in policies.teams:
            return requested
        return BASE_NAME
    if key is None:
        raise AuthError(401, "missing gateway key: send it as `x-api-key` or `Authorization: Bearer`")
    if entry is None:
        raise AuthError(401, "invalid gateway key")
    return entry.team


def check_admin(policies: PolicySet, headers: dict[str, str]) -> None:
    """Admin endpoints need an admin key; without admin keys they are open only under `auth: none`,
    which the server accepts only on loopback."""
    if not policies.admin_keys:
        if policies.base.auth == "none":
            return
        raise AuthError(403, "admin endpoints are disabled: list `admin_keys` in default.yaml")
    key = presented_key(headers)
    if key is None:
        raise AuthError(401, "missing admin key")
    digest = key_hash(key)
    if not any(hmac.compare_digest(digest, known) for known in policies.admin_keys):
        raise AuthError(403, "invalid admin key")
