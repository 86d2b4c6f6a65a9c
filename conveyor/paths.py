"""Paths a request may name (seed 002's rule, used wherever a job takes a path): letters,
digits, '/', '_', '.', '-', at most MAX_PATH_CHARS, and no '..' component. Where the path may
then lead (data roots, the backup root) is the caller's check, after resolving it."""

from __future__ import annotations

import re

SAFE_PATH = re.compile(r"^[a-zA-Z0-9/_.-]+$")
MAX_PATH_CHARS = 1024


def check_pattern(raw: str) -> str:
    """`raw` when it follows the rule; ValueError saying which part it breaks (an input model's
    validator calls it, so the error names the field)."""
    if not raw or len(raw) > MAX_PATH_CHARS or not SAFE_PATH.match(raw):
        raise ValueError("must match ^[a-zA-Z0-9/_.-]+$ (letters, digits, '/', '_', '.', '-')")
    if any(part == ".." for part in raw.split("/")):
        raise ValueError("must not contain '..'")
    return raw
