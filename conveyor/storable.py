"""What both databases can store: text without NUL characters or lone surrogates (PostgreSQL
refuses both in text and JSONB), and finite numbers (JSON has no NaN or Infinity).

Checked where input enters (the engine, the API), so that a bad value is refused naming its
field instead of failing inside the database — or, worse, being stored by one dialect and
not the other.
"""

from __future__ import annotations

import math
from typing import Any


def text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character, which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode text)"
    return None


def unstorable(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first place in a JSON-like value that cannot be stored, and why; None if all can."""
    if isinstance(value, str):
        problem = text_problem(value)
        return (path, problem) if problem else None
    if isinstance(value, float) and not math.isfinite(value):
        return path, "is not a finite number"
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (problem := text_problem(key)):
                return path, f"has a key that {problem}"  # never echo the key itself
            where = f"{path}.{key}" if path else str(key)
            if found := unstorable(item, where):
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if found := unstorable(item, f"{path}.{i}" if path else str(i)):
                return found
    return None
