"""Python-literal list cells (`"['a', 'b']"`, `"[1, 2]"`) parsed safely, never with eval."""

from __future__ import annotations

import ast


def parse_list(text: str) -> list:
    """Parses a Python list literal of strings/numbers; raises ValueError otherwise."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
        raise ValueError(f"not a Python list literal: {text[:80]!r} ({type(e).__name__})") from None
    if not isinstance(value, list):
        raise ValueError(f"expected a list literal, got {type(value).__name__}: {text[:80]!r}")
    return value
