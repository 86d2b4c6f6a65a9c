"""The drug interaction table: an operator's CSV files, validated and loaded into the store;
and the check of a list of medicines against the table in force.

Core, no HTTP: `conveyor medication load-interactions` loads a table, and the worker offers
`Interactions` to job types as the service "interactions" (the medication pack's
interaction_check). Names are compared normalised (`normalise`): case, spacing, a trailing
strength ("10 mg") and salt or hydrate words ("hydrochloride", "sodium") do not matter, and a
synonym (a brand) stands for its ingredient. Pairs are unordered.

The table is the operator's, not conveyor's: every result names the table and version it was
checked against, and a pair the table does not hold is not thereby safe.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from conveyor.audit import current_actor
from conveyor.errors import ConveyorError, PermanentError
from conveyor.model import new_job_id, utc_now
from conveyor.store.interactions import InteractionRow, InteractionTableInfo

# From most to least severe; a check reports the highest found.
SEVERITIES = ("contraindicated", "major", "moderate", "minor")
PAIR_COLUMNS = ("drug_a", "drug_b", "severity")
OPTIONAL_COLUMNS = (
    "description", "mechanism", "management", "evidence", "source", "source_version", "last_reviewed",
)  # fmt: skip
SYNONYM_COLUMNS = ("name", "ingredient")
MAX_NAME = 200
MAX_TEXT = 4000
MAX_ERRORS = 200  # reported per load; the count of the rest is given

# Words that name a salt, ester or hydrate rather than the active moiety, when they end a name
# of more than one word ("metoprolol succinate" -> "metoprolol", "potassium chloride" ->
# "potassium").
SALT_WORDS = frozenset(
    (
        "hydrochloride",
        "hcl",
        "dihydrochloride",
        "hydrobromide",
        "hyclate",
        "sodium",
        "disodium",
        "potassium",
        "calcium",
        "magnesium",
        "sulfate",
        "sulphate",
        "bisulfate",
        "succinate",
        "tartrate",
        "bitartrate",
        "besylate",
        "besilate",
        "maleate",
        "mesylate",
        "mesilate",
        "citrate",
        "acetate",
        "phosphate",
        "fumarate",
        "bromide",
        "chloride",
        "carbonate",
        "gluconate",
        "lactate",
        "oxalate",
        "monohydrate",
        "dihydrate",
        "trihydrate",
        "hemihydrate",
        "anhydrous",
    )
)
STRENGTH = re.compile(r"\s+\d+(?:[.,]\d+)?\s*(?:mg|mcg|µg|g|ml|iu|units?|%)(?:\s*/\s*\S+)?$")
MARKS = re.compile(r"[®™©]")


def normalise(name: str) -> str:
    """The form names are stored and compared in: NFKC, case-folded, single spaces, without
    trademark signs, a trailing strength or trailing salt words (while a word remains)."""
    text = MARKS.sub("", unicodedata.normalize("NFKC", name)).casefold()
    text = " ".join(text.split())
    while (stripped := STRENGTH.sub("", text)) != text:
        text = stripped
    words = text.split(" ")
    while len(words) > 1 and words[-1] in SALT_WORDS:
        words.pop()
    return " ".join(words)


class InvalidInteractionTable(ConveyorError):
    """A file to load failed validation; `errors` lists each problem with its file and line."""

    code = "INVALID_INTERACTION_TABLE"

    def __init__(self, errors: list[dict[str, Any]], dropped: int = 0) -> None:
        super().__init__(
            f"the interaction table was not loaded: {len(errors) + dropped} problem(s)", errors=errors, dropped=dropped
        )
        self.errors = errors


class NoInteractionTable(PermanentError):
    """No table is loaded: checking against nothing would read as 'no interactions'."""

    def __init__(self) -> None:
        super().__init__(
            "no drug interaction table is loaded; an operator loads one with "
            "`conveyor medication load-interactions` (see the README, 'Drug interaction table')"
        )


@dataclass
class _Problems:
    errors: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0

    def add(self, file: str, line: int | None, message: str, column: str | None = None) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"file": file, "line": line, "column": column, "message": message})
        else:
            self.dropped += 1

    def __bool__(self) -> bool:
        return bool(self.errors)


@dataclass(frozen=True, slots=True)
class ParsedTable:
    pairs: list[InteractionRow]
    synonyms: list[tuple[str, str]]
    sha256: str


def parse_table(pairs_csv: bytes, synonyms_csv: bytes | None = None, *, pairs_name: str = "interactions",
                synonyms_name: str = "synonyms") -> ParsedTable:  # fmt: skip
    """Both files validated together; InvalidInteractionTable naming every problem (up to
    MAX_ERRORS) when any row is wrong, so that nothing is loaded half."""
    problems = _Problems()
    pairs = _parse_pairs(_rows(pairs_csv, pairs_name, PAIR_COLUMNS, OPTIONAL_COLUMNS, problems), pairs_name, problems)
    ingredients = {name for p in pairs for name in (p.drug_a, p.drug_b)}
    synonyms: list[tuple[str, str]] = []
    if synonyms_csv is not None:
        rows = _rows(synonyms_csv, synonyms_name, SYNONYM_COLUMNS, (), problems)
        synonyms = _parse_synonyms(rows, synonyms_name, ingredients, problems)
    if problems:
        raise InvalidInteractionTable(problems.errors, problems.dropped)
    digest = hashlib.sha256(pairs_csv)
    if synonyms_csv is not None:
        digest.update(synonyms_csv)
    return ParsedTable(pairs, synonyms, digest.hexdigest())


def _rows(
    content: bytes, file: str, required: Sequence[str], optional: Sequence[str], problems: _Problems
) -> Iterable[tuple[int, dict[str, str]]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.add(file, None, f"not UTF-8 (byte {exc.start})")
        return []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    missing = [c for c in required if c not in header]
    unknown = [c for c in header if c not in required and c not in optional]
    if missing or unknown:
        expected = ", ".join([*required, *(f"[{c}]" for c in optional)])
        parts = [f"missing {', '.join(missing)}" if missing else "", f"unknown {', '.join(unknown)}" if unknown else ""]
        problems.add(file, 1, f"header: {'; '.join(p for p in parts if p)} (expected: {expected})")
        return []
    rows = []
    try:
        for record in reader:
            if None in record:
                problems.add(file, reader.line_num, f"more fields than the header's {len(header)}")
                continue
            if all(not (v or "").strip() for v in record.values()):
                continue  # a blank line
            rows.append((reader.line_num, {k: (v or "").strip() for k, v in record.items()}))
    except csv.Error as exc:
        problems.add(file, reader.line_num, f"not readable as CSV: {exc}")
    if not rows and not problems:
        problems.add(file, None, "no rows")
    return rows


def _name(value: str, file: str, line: int, column: str, problems: _Problems) -> str | None:
    if not value:
        problems.add(file, line, "empty", column)
        return None
    name = normalise(value)
    if not name or len(name) > MAX_NAME:
        problems.add(file, line, f"a name of 1-{MAX_NAME} characters is needed", column)
        return None
    return name


def _parse_pairs(rows: Iterable[tuple[int, dict[str, str]]], file: str, problems: _Problems) -> list[InteractionRow]:
    seen: dict[tuple[str, str], int] = {}
    pairs = []
    for line, row in rows:
        a = _name(row["drug_a"], file, line, "drug_a", problems)
        b = _name(row["drug_b"], file, line, "drug_b", problems)
        severity = row["severity"].casefold()
        if severity not in SEVERITIES:
            problems.add(file, line, f"one of {', '.join(SEVERITIES)}", "severity")
        text = {c: row.get(c) or None for c in OPTIONAL_COLUMNS}
        for column, value in text.items():
            if value is not None and len(value) > (100 if column == "source_version" else MAX_TEXT):
                problems.add(file, line, "too long", column)
        if text["last_reviewed"] is not None:
            try:
                date.fromisoformat(text["last_reviewed"])
            except ValueError:
                problems.add(file, line, "an ISO date (YYYY-MM-DD)", "last_reviewed")
        if a is None or b is None:
            continue
        if a == b:
            problems.add(file, line, "a drug paired with itself (after normalising names)")
            continue
        key = (min(a, b), max(a, b))
        if key in seen:
            problems.add(file, line, f"the same pair as line {seen[key]} (pairs are unordered)")
            continue
        seen[key] = line
        if severity in SEVERITIES:
            pairs.append(InteractionRow(key[0], key[1], severity, **text))  # type: ignore[arg-type]
    return pairs


def _parse_synonyms(
    rows: Iterable[tuple[int, dict[str, str]]], file: str, ingredients: set[str], problems: _Problems
) -> list[tuple[str, str]]:
    seen: dict[str, tuple[str, int]] = {}
    for line, row in rows:
        name = _name(row["name"], file, line, "name", problems)
        ingredient = _name(row["ingredient"], file, line, "ingredient", problems)
        if name is None or ingredient is None:
            continue
        if name == ingredient:
            continue  # a spelling that normalises to the ingredient itself needs no row
        if name in ingredients:
            problems.add(file, line, "names an ingredient of the interactions file: it cannot also stand for another")
        elif name in seen and seen[name][0] != ingredient:
            problems.add(file, line, f"the same name as line {seen[name][1]} for another ingredient")
        else:
            seen.setdefault(name, (ingredient, line))
    return sorted((name, ingredient) for name, (ingredient, _line) in seen.items())


# --- checking ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """One interacting pair among the medicines checked."""

    names: tuple[str, str]  # as given
    ingredients: tuple[str, str]  # as the table names them
    row: InteractionRow


@dataclass(frozen=True, slots=True)
class Check:
    table: InteractionTableInfo
    findings: list[Finding]
    unmatched: list[str]  # names given that the table does not know (as given)
    resolved: dict[str, str]  # name as given -> ingredient it was checked as

    @property
    def highest_severity(self) -> str | None:
        found = {f.row.severity for f in self.findings}
        return next((s for s in SEVERITIES if s in found), None)


class Interactions:
    """The table in force: load, describe, check. Offered to job types as the service
    "interactions"; the operator command loads through it."""

    def __init__(self, store: Any, audit: Any) -> None:
        self.store = store
        self.audit = audit

    async def load(
        self, pairs_path: Path, synonyms_path: Path | None = None, *, name: str, version: str
    ) -> InteractionTableInfo:
        """Validate the files and replace the table with them in one transaction, with an
        audit record (interactions.loaded) naming the table, version and hash."""
        if not name.strip() or len(name) > 200 or not version.strip() or len(version) > 100:
            raise InvalidInteractionTable(
                [{"file": None, "line": None, "column": None, "message": "a name (<=200) and version (<=100) needed"}]
            )
        pairs_csv = await asyncio.to_thread(pairs_path.read_bytes)
        synonyms_csv = await asyncio.to_thread(synonyms_path.read_bytes) if synonyms_path is not None else None
        parsed = parse_table(
            pairs_csv,
            synonyms_csv,
            pairs_name=pairs_path.name,
            synonyms_name=synonyms_path.name if synonyms_path is not None else "synonyms",
        )
        info = InteractionTableInfo(
            id=new_job_id(),
            name=name.strip(),
            version=version.strip(),
            sha256=parsed.sha256,
            pairs=len(parsed.pairs),
            synonyms=len(parsed.synonyms),
            loaded_at=utc_now(),
            loaded_by=current_actor().user_id,
        )
        record = self.audit.entry("interactions.loaded", "interaction_table", str(info.id), after=info_json(info))
        await self.store.replace_interaction_table(info, parsed.pairs, parsed.synonyms, [record])
        return info

    async def current(self) -> InteractionTableInfo | None:
        return await self.store.interaction_table()  # type: ignore[no-any-return]

    async def check(self, names: Sequence[str]) -> Check:
        """Every pair among `names` against the table in force (one read transaction);
        NoInteractionTable when none is loaded."""
        given = {name: normalise(name) for name in names}
        table, synonyms, rows, known = await self.store.interaction_snapshot(set(given.values()))
        if table is None:
            raise NoInteractionTable()
        resolved = {name: synonyms.get(norm, norm) for name, norm in given.items()}
        by_pair = {(r.drug_a, r.drug_b): r for r in rows}
        ingredients: dict[str, str] = {}  # ingredient -> the first name given for it
        for name in names:
            ingredients.setdefault(resolved[name], name)
        findings = []
        order = list(ingredients)
        for i, a in enumerate(order):
            for b in order[i + 1 :]:
                row = by_pair.get((min(a, b), max(a, b)))
                if row is not None:
                    findings.append(Finding((ingredients[a], ingredients[b]), (a, b), row))
        findings.sort(key=lambda f: SEVERITIES.index(f.row.severity))
        unmatched = [name for name in dict.fromkeys(names) if resolved[name] not in known]
        return Check(table, findings, unmatched, resolved)


def info_json(info: InteractionTableInfo) -> dict[str, Any]:
    return {
        "id": str(info.id),
        "name": info.name,
        "version": info.version,
        "sha256": info.sha256,
        "pairs": info.pairs,
        "synonyms": info.synonyms,
        "loadedAt": info.loaded_at.isoformat().replace("+00:00", "Z"),
        "loadedBy": info.loaded_by,
    }
