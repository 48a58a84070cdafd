"""Dated list prices for the cost columns of `leangate bench`, in US dollars per million tokens."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

# Anthropic list prices of Claude Sonnet 4.5 and Haiku 4.5 as of this date, typed in by hand (the
# harness fetches nothing). A 5-minute cache write costs 1.25x input, a 1-hour write 2x, a read 0.1x.
PRICES_DATE = "2026-12-04"


@dataclass(frozen=True)
class ModelPrice:
    input: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    output: float


# Model glob -> price; the first match wins.
PRICES: dict[str, ModelPrice] = {
    "claude-sonnet-4-5*": ModelPrice(input=3.00, cache_write_5m=3.75, cache_write_1h=6.00, cache_read=0.30, output=15.00),
    "claude-haiku-4-5*": ModelPrice(input=1.00, cache_write_5m=1.25, cache_write_1h=2.00, cache_read=0.10, output=5.00),
}


def price_for(model: str) -> ModelPrice | None:
    """Return the price of `model`, or None when the table has no entry for it."""
    for pattern, price in PRICES.items():
        if fnmatch.fnmatchcase(model, pattern):
            return price
    return None


def cost_usd(model: str, *, uncached: int, cache_write_5m: int, cache_write_1h: int, cache_read: int,
             output: int) -> float | None:
    """Return the billed cost in dollars of one request's usage, or None for a model without a price."""
    price = price_for(model)
    if price is None:
        return None
    total = (uncached * price.input + cache_write_5m * price.cache_write_5m + cache_write_1h * price.cache_write_1h
             + cache_read * price.cache_read + output * price.output)
    return total / 1_000_000
