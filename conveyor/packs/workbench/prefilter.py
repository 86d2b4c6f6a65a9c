"""A multi-pattern prefilter for the security scan: Hyperscan finds where the scan's Python
regexes could match, and the regexes (and their validators) then run on those lines only.

Hyperscan scans bytes; the text goes in as `as_bytes(text)`, one byte per character (ASCII as
itself, anything else as a placeholder byte from 0x80), so its offsets are the text's. Each
Python pattern is translated, from its parse tree, into a Hyperscan pattern that matches at
least everything the Python one matches there:

- every single-character item (literal, class, `\\d`, `\\w`, `\\s`, `.`) becomes a class of
  exactly the ASCII characters Python's own compiled item accepts (case folding included);
  a class also takes every placeholder byte (so Unicode digits, letters and spaces are never
  missed), an ASCII literal the placeholders of the four non-ASCII characters that IGNORECASE
  folds onto ASCII letters (U+0130, U+0131, U+017F, U+212A);
- lookarounds and word boundaries are dropped, except a leading one-character negative
  lookbehind `(?<!C)`, which becomes `(?:^|[^C])` (it keeps `12:34:56` in a timestamp from
  being an IPv6 candidate on every log line);
- repeats, groups, alternation and `^`/`$` (multi-line) stay; for the few patterns whose
  start-of-match tracking Hyperscan finds too large, repeats lose their upper bound and long
  alternations of fixed-width words become a class repeated (`loose`): still supersets.

Hyperscan reports, for every match end, the leftmost start (HS_FLAG_SOM_LEFTMOST; its own
prefilter mode cannot be combined with start-of-match reporting). A Python match [s, e)
therefore always has a report (s' <= s, e). A window is the lines from s' to e, plus one line
before and one after; overlapping or touching windows merge.

Why the scan of the windows finds exactly what the scan of the whole block finds: every
match of the whole block lies inside one window, so no window edge cuts a match, and
`finditer` in a window starts in step with `finditer` over the block. A window starts at a
line start, where the block has "\\n" before it: none of the scan's lookbehinds excludes "\\n"
and `\\b`/`^` read a newline as they read the start of a string. A window ends after a line's
"\\n": no rule's match can end with a newline and none of its lookaheads can read one, so
cutting the text there changes no attempt that does not run past the window, and one that
does belongs to a match the window would hold. PII spans overlap only within a window, so
resolving overlaps window by window keeps the same spans. A new rule must keep these
properties; tests/test_workbench_scan_prefilter.py compares the two paths on the test files,
the PII corpus, a generated log with planted findings, lines-spanning matches, Unicode folds
and digits, bytes that are not UTF-8 and random mixtures.

Compiling takes seconds of CPU and ~175 MB of the compiler's heap, so it happens in a helper
process (`compile_elsewhere`; the worker only loads the ~8 MB result), once per process, and
the database is kept in a cache directory (the data directory's workbench/cache) for the next
process, which loads it in milliseconds. `hyperscan` ships as
wheels for Linux x86-64, macOS and Windows; where it does not import or a pattern does not
compile, `Prefilter.build` returns None, a log line says so, and the scan takes the plain path.
"""

from __future__ import annotations

import bisect
import codecs
import hashlib
import json
import logging
import os
import platform
import re
import subprocess  # nosec B404
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from re import _compiler as sre_compile  # type: ignore[attr-defined]
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

log = logging.getLogger("conveyor.packs.workbench.prefilter")

TRANSLATOR_VERSION = 1  # part of the cache key: raise it when the translation changes


class Untranslatable(ValueError):
    """A construct with no superset in Hyperscan's syntax (a back-reference, local flags)."""


@cache
def folds() -> dict[str, str]:
    """Non-ASCII characters that Python's IGNORECASE matches with an ASCII letter (Turkish
    dotted and dotless i, long s, the Kelvin sign), each given a placeholder byte of its own."""
    found: list[str] = []
    # A plane at a time: the whole of Unicode as one string of one-character strings made a
    # transient of ~100 MB in the worker that first scanned non-ASCII text.
    for plane in range(0x80, 0x110000, 0x10000):
        chars = (chr(c) for c in range(plane, min(plane + 0x10000, 0x110000)) if not 0xD800 <= c < 0xE000)
        found += re.findall(r"[\x00-\x7f]", "".join(chars), re.IGNORECASE)
    if len(found) >= 0x20 or any(ord(c) <= 0xFF for c in found):  # a future Unicode table
        raise Untranslatable(f"case folds onto ASCII that have no placeholder: {found}")
    return {c: chr(FOLD_BASE + n) for n, c in enumerate(found)}


FOLD_BASE = 0x81  # placeholders 0x81.., every other non-ASCII character becomes 0x80


def _placeholders(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    table = folds()
    return "".join(table.get(c, "\x80") for c in error.object[error.start : error.end]), error.end


codecs.register_error("conveyor-prefilter", _placeholders)


def as_bytes(text: str) -> bytes:
    """One byte per character: ASCII as itself, anything else as a placeholder byte >= 0x80
    (a Latin-1 character as its own byte), so offsets in the bytes are offsets in `text`."""
    return text.encode("latin-1", errors="conveyor-prefilter")


def _members(node: tuple[Any, Any], state: Any) -> list[int]:
    """The bytes one single-character parse node is let match: the ASCII characters Python's
    own engine accepts for it, the placeholders of the non-ASCII characters it accepts among
    the case folds, and, unless the node is one ASCII literal, every byte from 0x80."""
    sub = sre_parse.SubPattern(state, [node])
    compiled = sre_compile.compile(sub, state.flags)
    members = [c for c in range(128) if compiled.fullmatch(chr(c))]
    op, av = node
    if op is sre_constants.LITERAL and av < 128:
        return members + [ord(p) for c, p in folds().items() if compiled.fullmatch(c)]
    return members + list(range(0x80, 0x100))


def _class(members: Sequence[int], *, negate: bool = False) -> str:
    parts: list[str] = []
    run: list[int] = []
    for c in [*sorted(set(members)), -2]:
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            parts.append(f"\\x{run[0]:02x}" if len(run) == 1 else f"\\x{run[0]:02x}-\\x{run[-1]:02x}")
        run = [c]
    if negate:  # every byte not listed
        return "[^" + "".join(parts) + "]" if parts else r"[\x00-\xff]"
    return "[" + "".join(parts) + "]"


SINGLE = {sre_constants.LITERAL, sre_constants.NOT_LITERAL, sre_constants.IN, sre_constants.ANY}
REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT}
if hasattr(sre_constants, "POSSESSIVE_REPEAT"):
    REPEATS.add(sre_constants.POSSESSIVE_REPEAT)
KEPT_ANCHORS = {
    sre_constants.AT_BEGINNING: "^",
    sre_constants.AT_BEGINNING_LINE: "^",
    sre_constants.AT_BEGINNING_STRING: "^",
    sre_constants.AT_END: "$",
    sre_constants.AT_END_LINE: "$",
    sre_constants.AT_END_STRING: "$",
}


BIG_BRANCH = 8


def _span(branches: Sequence[Any], state: Any) -> tuple[int, int, set[int]]:
    """Shortest and longest length, and every byte, of an alternation of fixed-width items:
    `[bytes]{shortest,longest}` matches a superset of it."""
    low, high, members = None, 0, set()
    for branch in branches:
        a = b = 0
        for op, av in branch.data:
            if op in SINGLE:
                a, b = a + 1, b + 1
                members.update(_members((op, av), state))
            elif op in REPEATS and av[1] is not sre_constants.MAXREPEAT:
                x, y, m = _span([av[2]], state)
                a, b = a + av[0] * x, b + av[1] * y
                members.update(m)
            elif op is sre_constants.BRANCH:
                x, y, m = _span(av[1], state)
                a, b = a + x, b + y
                members.update(m)
            elif op is sre_constants.SUBPATTERN and not (av[1] or av[2]):
                x, y, m = _span([av[3]], state)
                a, b = a + x, b + y
                members.update(m)
            elif op is not sre_constants.AT:
                raise Untranslatable(f"{op} in a long alternation")
        low = a if low is None else min(low, a)
        high = max(high, b)
    return low or 0, high, members


def _sequence(data: Iterable[tuple[Any, Any]], state: Any, *, leading: bool, loose: bool = False) -> str:
    out: list[str] = []
    for n, (op, av) in enumerate(data):
        if op in SINGLE:
            out.append(_class(_members((op, av), state)))
        elif op is sre_constants.AT:
            out.append(KEPT_ANCHORS.get(av, ""))  # \b, \B: dropped (a superset)
        elif op is sre_constants.BRANCH and loose and len(av[1]) > BIG_BRANCH:
            low, high, members = _span(av[1], state)
            out.append(f"{_class(members)}{{{low},{high}}}")
        elif op is sre_constants.BRANCH:
            out.append("(?:" + "|".join(_sequence(p.data, state, leading=False, loose=loose) for p in av[1]) + ")")
        elif op is sre_constants.SUBPATTERN:
            _group, add_flags, del_flags, p = av
            if add_flags or del_flags:
                raise Untranslatable("local flags")
            out.append("(?:" + _sequence(p.data, state, leading=False, loose=loose) + ")")
        elif op in REPEATS:
            low, high, p = av
            body = _sequence(p.data, state, leading=False, loose=loose)
            unbounded = high is sre_constants.MAXREPEAT or (loose and high > max(low, 1))
            bound = f"{{{low},}}" if unbounded else f"{{{low},{high}}}"
            out.append(f"(?:{body}){bound}")
        elif op is getattr(sre_constants, "ATOMIC_GROUP", object()):
            out.append("(?:" + _sequence(av.data, state, leading=False, loose=loose) + ")")
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            direction, p = av
            one = len(p.data) == 1 and p.data[0][0] in SINGLE
            if leading and n == 0 and op is sre_constants.ASSERT_NOT and direction == -1 and one:
                ascii_only = [c for c in _members(p.data[0], state) if c < 128]
                out.append("(?:^|" + _class(ascii_only, negate=True) + ")")
            # any other lookaround: dropped (a superset)
        else:
            raise Untranslatable(f"{op} is not translated")
    return "".join(out)


def translate(pattern: re.Pattern[str], *, loose: bool = False) -> str:
    """A Hyperscan pattern (bytes, multi-line) matching a superset of `pattern`'s matches (on
    `as_bytes` of a text); `loose` lifts the upper bound of every repeat, for the patterns
    whose start-of-match tracking Hyperscan finds too large otherwise."""
    if not isinstance(pattern.pattern, str):
        raise Untranslatable("a bytes pattern")
    parsed = sre_parse.parse(pattern.pattern, pattern.flags)
    return _sequence(parsed.data, parsed.state, leading=True, loose=loose)


class CompileFailed(Exception):
    """A pattern that cannot be translated, or a database Hyperscan refuses."""


def compile_here(patterns: Sequence[re.Pattern[str]]) -> bytes:
    """The serialized Hyperscan database of `patterns` (CompileFailed if there is none)."""
    import hyperscan

    flag = hyperscan.HS_FLAG_SOM_LEFTMOST | hyperscan.HS_FLAG_MULTILINE
    expressions: list[bytes] = []
    try:
        for pattern in patterns:
            expression = translate(pattern).encode()
            try:
                hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK).compile(expressions=[expression], flags=[flag])
            except hyperscan.error:  # "Pattern is too large": track fewer states
                expression = translate(pattern, loose=True).encode()
            expressions.append(expression)
        database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        database.compile(expressions=expressions, ids=list(range(len(expressions))), flags=[flag] * len(expressions))
    except (Untranslatable, hyperscan.error) as exc:
        raise CompileFailed(str(exc)) from None
    return bytes(hyperscan.dumpb(database))


COMPILE_FAILED_EXIT = 3
COMPILE_TIMEOUT_S = 600


def compile_elsewhere(patterns: Sequence[re.Pattern[str]]) -> bytes:
    """`compile_here` in a process of its own. Hyperscan's compiler takes ~130 MB of heap for
    these patterns and the allocator keeps it once freed: compiled in the worker, that would
    stay in the worker's resident set for its lifetime, and its peak would be every first
    scan's. The helper gives it back when it exits; the worker only loads the result (~8 MB).
    Where no helper can be started (no interpreter to run), the compile happens here."""
    order = json.dumps([[p.pattern, p.flags] for p in patterns])
    package_root = str(Path(__file__).resolve().parents[3])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    # -c, not -m: run as __main__, this module would be imported a second time by its package
    argv = [sys.executable, "-c", "from conveyor.packs.workbench.prefilter import helper_main; helper_main()"]
    try:
        # our own interpreter and module, no shell, nothing from the job's input
        done = subprocess.run(  # nosec B603
            argv, input=order.encode(), capture_output=True, env=env, timeout=COMPILE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("security scan: no helper process to compile the prefilter (%s); compiling here", exc)
        return compile_here(patterns)
    if done.returncode == COMPILE_FAILED_EXIT:
        raise CompileFailed(done.stderr.decode(errors="replace").strip()[-500:])
    if done.returncode != 0 or not done.stdout:
        log.warning(
            "security scan: the prefilter's helper process failed (exit %s: %s); compiling here",
            done.returncode,
            done.stderr.decode(errors="replace").strip()[-500:],
        )
        return compile_here(patterns)
    return done.stdout


def helper_main() -> None:
    """The helper: (pattern, flags) pairs as JSON on stdin, the serialized database on stdout."""
    patterns = [re.compile(pattern, flags) for pattern, flags in json.loads(sys.stdin.buffer.read())]
    try:
        serialized = compile_here(patterns)
    except CompileFailed as exc:
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(COMPILE_FAILED_EXIT) from None
    sys.stdout.buffer.write(serialized)
    sys.stdout.buffer.flush()


class Prefilter:
    """Candidate windows, as line ranges, for a set of Python patterns."""

    def __init__(self, database: Any) -> None:
        self.database = database

    @classmethod
    def build(cls, patterns: Sequence[re.Pattern[str]], cache_dir: Path | None = None) -> Prefilter | None:
        """Compiled once per process; where `cache_dir` is given, the compiled database is kept
        there (compiling takes seconds, loading it milliseconds)."""
        try:
            import hyperscan
        except ImportError as exc:  # no wheel for this platform
            log.warning("security scan: hyperscan is not available (%s); every block takes the plain path", exc)
            return None
        key = hashlib.sha256(
            repr(
                [
                    TRANSLATOR_VERSION,
                    hyperscan.__version__,
                    platform.machine(),
                    [(p.pattern, p.flags) for p in patterns],
                ]
            ).encode()
        ).hexdigest()[:24]
        cached = Path(cache_dir) / f"scan-prefilter-{key}.hsdb" if cache_dir is not None else None
        if cached is not None and cached.is_file():
            try:
                loaded = hyperscan.loadb(cached.read_bytes(), hyperscan.HS_MODE_BLOCK)
                loaded.scratch = hyperscan.Scratch(loaded)
                return cls(loaded)
            except (hyperscan.error, OSError, ValueError) as exc:
                log.warning("security scan: the cached prefilter %s does not load (%s); compiling it", cached, exc)
        started = time.monotonic()
        try:
            serialized = compile_elsewhere(patterns)
        except CompileFailed as exc:
            log.warning("security scan: the prefilter does not compile (%s); every block takes the plain path", exc)
            return None
        database = hyperscan.loadb(serialized, hyperscan.HS_MODE_BLOCK)
        database.scratch = hyperscan.Scratch(database)
        log.info(
            "security scan: prefilter of %d patterns compiled in %.1f s", len(patterns), time.monotonic() - started
        )
        if cached is not None:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                partial = cached.with_name(f"{cached.name}.{os.getpid()}.{threading.get_ident()}.partial")
                partial.write_bytes(serialized)
                partial.replace(cached)
            except OSError as exc:
                log.warning("security scan: the prefilter cannot be cached in %s (%s)", cache_dir, exc)
        return cls(database)

    def windows(self, data: bytes, newlines: Sequence[int]) -> list[tuple[int, int]]:
        """Merged (first line, last line) windows of `data` (`as_bytes` of a text, or the text's
        own bytes when it is ASCII), lines numbered from 0 by the offsets of its newlines."""
        hits: list[tuple[int, int]] = []

        def on_match(_id: int, start: int, end: int, _flags: int, _context: Any) -> None:
            hits.append((start, end))

        self.database.scan(data, match_event_handler=on_match)
        if not hits:
            return []
        last_line = len(newlines)
        spans = sorted(
            {
                (
                    max(bisect.bisect_left(newlines, start) - 1, 0),
                    min(bisect.bisect_left(newlines, max(end - 1, start)) + 1, last_line),
                )
                for start, end in hits
            }
        )
        merged = [list(spans[0])]
        for first, last in spans[1:]:
            if first <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        return [(a, b) for a, b in merged]
