"""leangate: a token-cutting gateway between coding agents and model providers."""

__version__ = "0.1.0"
