"""Checks of the tier sections that need the whole policy: names of tiers and request classes."""

from __future__ import annotations

from engine.policy.models import Policy
from engine.stages.tools.select import UNMATCHED_CLASS

KeyPath = tuple[str | int, ...]


def tier_reference_errors(policy: Policy) -> list[tuple[KeyPath, str]]:
    """Return (key path, message) for each tier rule, price or class name that names nothing.

    A misspelt name would otherwise never match and go unnoticed, so the loader reports these like
    validation errors.
    """
    errors: list[tuple[KeyPath, str]] = []
    tiers = [tier.name for tier in policy.tiers]
    # The classifier names a request that no class rule matches with UNMATCHED_CLASS.
    classes = {rule.name for rule in policy.classes} | {UNMATCHED_CLASS}

    for index, rule in enumerate(policy.tier_rules):
        action = "force" if rule.force is not None else "floor"
        if rule.target not in tiers:
            errors.append((("tier_rules", index, action), f"unknown tier {rule.target!r}; known: {tiers}"))
        request_classes = rule.when.request_class
        for name in [request_classes] if isinstance(request_classes, str) else request_classes or []:
            if name not in classes:
                errors.append((("tier_rules", index, "when", "class"), f"unknown request class {name!r}; known: {sorted(classes)}"))

    for name in policy.tier_session.prices:
        if name not in tiers:
            errors.append((("tier_session", "prices", name), f"unknown tier {name!r}; known: {tiers}"))
    return errors
