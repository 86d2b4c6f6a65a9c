"""Paths in job data, confined to the data roots.

A `filePath` matches seed 002's pattern (`^[a-zA-Z0-9/_.-]+$`). A relative path is read
under the data directory (where `POST /api/v1/files` puts uploads); an absolute one must
lie under one of the roots (CONVEYOR_DATA_ROOTS). Either way the path is resolved first
(`..` collapsed, every symlink followed) and only then checked for containment, so neither
`../../etc/passwd` nor a symlink planted inside a root that points outside it gets through.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from conveyor import PermanentError
from conveyor.paths import MAX_PATH_CHARS, SAFE_PATH, check_pattern

__all__ = ["MAX_PATH_CHARS", "SAFE_PATH", "PathRefused", "check_pattern", "confine"]


class PathRefused(PermanentError):
    """A filePath names nothing a job may read; the message says why without echoing more
    of the file system than the caller gave."""


def confine(raw: str, roots: Sequence[Path]) -> Path:
    """The real path of an existing regular file that `raw` names inside one of `roots`.

    Raises PathRefused for anything else: a pattern mismatch, a path escaping every root
    (by `..`, by being absolute elsewhere, or through a symlink), a missing file, a directory.
    """
    try:
        check_pattern(raw)
    except ValueError as exc:
        raise PathRefused(f"filePath {exc}") from None
    if not roots:
        raise PathRefused("no data roots are configured (CONVEYOR_DATA_DIR, CONVEYOR_DATA_ROOTS)")
    real_roots = [Path(os.path.realpath(r)) for r in roots]
    candidate = Path(raw) if raw.startswith("/") else Path(roots[0]) / raw
    real = Path(os.path.realpath(candidate))
    if not any(real == root or real.is_relative_to(root) for root in real_roots):
        raise PathRefused(f"filePath {raw!r} is outside the data roots")
    if not real.is_file():
        raise PathRefused(f"filePath {raw!r} names no file")
    return real
