"""Prometheus metrics, served at GET /metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "leangate_requests", "Inference requests handled.", ["protocol", "team", "tier", "status"], registry=self.registry
        )
        self.tokens = Counter(
            "leangate_input_tokens_estimated", "Estimated input tokens before and after the pipeline.",
            ["team", "stage"], registry=self.registry,
        )
        self.usage = Counter(
            "leangate_upstream_usage_tokens", "Tokens the upstream reported as billed usage.", ["team", "kind"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "leangate_request_seconds", "Time from request arrival to the decision record.", ["protocol"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )
        self.cache = Counter("leangate_cache_lookups", "Semantic cache lookups by result.", ["result"], registry=self.registry)

    def observe(self, record: dict[str, Any]) -> None:
        team = record.get("team") or "default"
        tier = (record.get("tier") or {}).get("tier") or "none"
        self.requests.labels(record.get("protocol") or "", team, tier, str(record.get("status"))).inc()
        tokens = record.get("tokens") or {}
        for stage in ("before", "after"):
            if isinstance(tokens.get(stage), int):
                self.tokens.labels(team, stage).inc(tokens[stage])
        for kind, value in (record.get("usage") or {}).items():
            if isinstance(value, (int, float)) and kind.endswith("tokens"):
                self.usage.labels(team, kind).inc(value)
        cache = record.get("cache")
        if isinstance(cache, dict) and cache.get("result"):
            self.cache.labels(cache["result"]).inc()
        if isinstance(record.get("latency_ms"), (int, float)):
            self.latency.labels(record.get("protocol") or "").observe(record["latency_ms"] / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
