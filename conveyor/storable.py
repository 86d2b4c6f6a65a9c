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
    if text.isascii():  # no surrogates; skips encoding a copy of every string of bulk input
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid Unicode text)"
    return None


def unstorable(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first place in a JSON-like value that cannot be stored, and why; None if all can."""
    if (found := _first_problem(value)) is None:
        return None
    reversed_path, problem = found
    return ".".join([*([path] if path else []), *reversed(reversed_path)]), problem


def _first_problem(value: Any) -> tuple[list[str], str] | None:
    # The path is built on the way back from a problem, not on the way down to every value:
    # this runs twice per job enqueued. Dicts first, for the same reason: every input is one.
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (problem := text_problem(key)):
                return [], f"has a key that {problem}"  # never echo the key itself
            if found := _first_problem(item):
                found[0].append(str(key))
                return found
    elif isinstance(value, str):
        problem = text_problem(value)
        return ([], problem) if problem else None
    elif isinstance(value, float):
        return None if math.isfinite(value) else ([], "is not a finite number")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if found := _first_problem(item):
                found[0].append(str(i))
                return found
    return None
