"""The drug interaction table and interaction_check (seed 001): CSV files validated with
per-row errors and loaded atomically by `conveyor medication load-interactions` (on both
databases), names normalised and pairs unordered; a check reports each interaction, the
names it could not match, the highest severity and the table, and fails clearly with no
table loaded. Uses the sample table shipped with the pack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import TEST_ENCRYPTION, make_settings, running_worker
from typer.testing import CliRunner

import conveyor.packs.medication
from conveyor import Conveyor, InvalidJobData
from conveyor.cli import app as cli
from conveyor.interactions import InvalidInteractionTable, normalise, parse_table
from conveyor.model import Owner, Status
from conveyor.settings import Settings
from conveyor.store.audit import AuditFilter
from conveyor.store.schema import interactions

SAMPLE = Path(conveyor.packs.medication.__file__).parent / "data"
OWNER = Owner(user_id="patient-7", org_id="clinic-a", created_by="nurse-1")
runner = CliRunner()
_SECOND = timedelta(seconds=1)

PAIRS = b"""drug_a,drug_b,severity,mechanism,management,source,last_reviewed
Warfarin,Ibuprofen,major,both impair haemostasis,avoid; use paracetamol,label A,2025-06-01
simvastatin,CLARITHROMYCIN,contraindicated,CYP3A4 inhibition,do not combine,label B,
Metoprolol Succinate,verapamil,moderate,additive AV block,monitor heart rate,,
"""
SYNONYMS = b"""name,ingredient
Advil,ibuprofen
Coumadin,warfarin
Biaxin,clarithromycin
"""


def load(url: str, tmp_path: Path, pairs: bytes = PAIRS, synonyms: bytes | None = SYNONYMS, **opts: str) -> Any:
    (tmp_path / "pairs.csv").write_bytes(pairs)
    args = ["medication", "load-interactions", str(tmp_path / "pairs.csv"), "--database-url", url]
    if synonyms is not None:
        (tmp_path / "synonyms.csv").write_bytes(synonyms)
        args += ["--synonyms", str(tmp_path / "synonyms.csv")]
    args += ["--name", opts.get("name", "clinic formulary"), "--version", opts.get("version", "2026-11")]
    return runner.invoke(cli, args)


def stored_pairs(url: str) -> list[tuple[str, str, str]]:
    async def read() -> list[tuple[str, str, str]]:
        c = interactions.c
        query = sa.select(c.drug_a, c.drug_b, c.severity).order_by(c.drug_a, c.drug_b)
        async with Conveyor.from_settings(Settings(database_url=url)) as app, app.store._read_engine.connect() as conn:
            return [tuple(r) for r in await conn.execute(query)]

    return asyncio.run(read())


# --- the files ---------------------------------------------------------------------------------


def test_names_are_compared_without_case_spacing_strength_or_salt() -> None:
    assert normalise("  Metoprolol   SUCCINATE ") == "metoprolol"
    assert normalise("Lisinopril 10 mg") == normalise("lisinopril") == "lisinopril"
    assert normalise("Coumadin®") == "coumadin"
    assert normalise("potassium chloride") == "potassium" and normalise("calcium") == "calcium"
    assert normalise("St. John's Wort") == "st. john's wort"


def test_pairs_are_unordered_and_synonyms_stand_for_their_ingredient() -> None:
    parsed = parse_table(PAIRS, SYNONYMS)
    assert [(p.drug_a, p.drug_b, p.severity) for p in parsed.pairs] == [
        ("ibuprofen", "warfarin", "major"),
        ("clarithromycin", "simvastatin", "contraindicated"),
        ("metoprolol", "verapamil", "moderate"),
    ]
    assert parsed.pairs[0].last_reviewed == "2025-06-01" and parsed.pairs[2].source is None
    assert parsed.synonyms == [("advil", "ibuprofen"), ("biaxin", "clarithromycin"), ("coumadin", "warfarin")]
    assert len(parsed.sha256) == 64 and parsed.sha256 != parse_table(PAIRS).sha256


def test_every_bad_row_is_named_with_its_line_and_nothing_is_loaded() -> None:
    bad = (
        PAIRS
        + b"""ibuprofen,WARFARIN,minor,,,,
aspirin,aspirin,major,,,,
aspirin,,severe,,,,2025-13-01
"""
    )
    synonyms = SYNONYMS + b"warfarin,aspirin\nCoumadin,heparin\n"
    with pytest.raises(InvalidInteractionTable) as caught:
        parse_table(bad, synonyms)
    found = {(e["file"], e["line"], e["column"]) for e in caught.value.errors}
    assert found == {
        ("interactions", 5, None),  # the pair of line 2, the other way round
        ("interactions", 6, None),  # a drug with itself
        ("interactions", 7, "drug_b"),
        ("interactions", 7, "severity"),
        ("interactions", 7, "last_reviewed"),
        ("synonyms", 5, None),  # an ingredient of the pairs cannot stand for another
        ("synonyms", 6, None),  # coumadin given twice, for two ingredients
    }
    messages = " ".join(e["message"] for e in caught.value.errors)
    assert "the same pair as line 2" in messages and "contraindicated, major, moderate, minor" in messages


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"drug_a,drug_b\nx,y\n", "header: missing severity"),
        (b"drug_a,drug_b,severity,notes\nx,y,major,z\n", "header: unknown notes"),
        (b"drug_a,drug_b,severity\n", "no rows"),
        (b"drug_a,drug_b,severity\nx,y,major,extra\n", "more fields than the header"),
        (b"drug_a,drug_b,severity\n\xff,y,major\n", "not UTF-8"),
    ],
)
def test_a_file_that_is_not_the_documented_csv_is_refused(content: bytes, message: str) -> None:
    with pytest.raises(InvalidInteractionTable) as caught:
        parse_table(content)
    assert message in caught.value.errors[0]["message"]


def test_the_sample_table_shipped_with_the_pack_loads_with_its_licence_beside_it() -> None:
    parsed = parse_table((SAMPLE / "interactions.csv").read_bytes(), (SAMPLE / "synonyms.csv").read_bytes())
    assert len(parsed.pairs) == 423 and len(parsed.synonyms) == 210
    assert {p.severity for p in parsed.pairs} == {"major", "moderate", "minor"}
    assert "MIT License" in (SAMPLE / "LICENSE.drug-interaction-mcp").read_text()
    assert "NOT CLINICAL CONTENT" in (SAMPLE / "NOTICE").read_text()


# --- loading, on both databases ----------------------------------------------------------------


def test_load_interactions_replaces_the_table_atomically_and_is_audited(database_url: str, tmp_path: Path) -> None:
    done = load(database_url, tmp_path)
    assert done.exit_code == 0, done.output
    info = json.loads(done.output)
    assert (info["name"], info["version"], info["pairs"], info["synonyms"]) == ("clinic formulary", "2026-11", 3, 3)
    assert info["sha256"] == parse_table(PAIRS, SYNONYMS).sha256 and info["loadedBy"].startswith("cli:")

    refused = load(database_url, tmp_path, PAIRS + b"aspirin,aspirin,major,,,,\n", version="2026-12")
    assert refused.exit_code == 4
    error = json.loads(refused.stderr)
    assert error["error"] == "INVALID_INTERACTION_TABLE" and error["errors"][0]["line"] == 5
    assert len(stored_pairs(database_url)) == 3, "a refused load changes nothing"

    smaller = load(database_url, tmp_path, b"drug_a,drug_b,severity\nb,a,minor\n", None, version="2027-01")
    assert smaller.exit_code == 0, smaller.output
    assert stored_pairs(database_url) == [("a", "b", "minor")]
    shown = runner.invoke(cli, ["medication", "interactions", "--database-url", database_url])
    assert json.loads(shown.output)["version"] == "2027-01"

    async def records() -> list[Any]:
        async with Conveyor.from_settings(Settings(database_url=database_url)) as app:
            found, _ = await app.audit.list(AuditFilter(object_type="interaction_table"), limit=10)
            return found

    loaded = asyncio.run(records())
    assert [r.action for r in loaded] == ["interactions.loaded", "interactions.loaded"]
    assert {r.after["version"] for r in loaded} == {"2026-11", "2027-01"}


def test_with_no_table_loaded_the_command_says_so(database_url: str) -> None:
    shown = runner.invoke(cli, ["medication", "interactions", "--database-url", database_url])
    assert shown.exit_code == 3 and "no drug interaction table is loaded" in shown.stderr


# --- interaction_check ------------------------------------------------------------------------


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[Conveyor]:
    conveyor = Conveyor.from_settings(make_settings(database_url, packs="medication", **TEST_ENCRYPTION))
    await conveyor.start()
    yield conveyor
    await conveyor.close()


async def check(app: Conveyor, medications: list[str]) -> Any:
    job = await app.engine.enqueue("interaction_check", {"user_id": "patient-7", "medications": medications},
                                   owner=OWNER)  # fmt: skip
    async with running_worker(app):
        return await app.engine.wait(job.id, timeout=30)


async def load_sample(app: Conveyor) -> None:
    await app.interactions.load(SAMPLE / "interactions.csv", SAMPLE / "synonyms.csv", name="demo", version="0.1.0")


async def test_interaction_check_reports_each_pair_the_unmatched_names_and_the_table(app: Conveyor) -> None:
    await load_sample(app)
    medications = ["Coumadin", "Advil 200 mg", "Flagyl", "lisinopril", "Unobtainium"]
    done = await check(app, medications)
    assert done.status is Status.COMPLETED, done.error
    result = done.result
    found = {(tuple(i["drugs"]), tuple(i["ingredients"]), i["severity"]) for i in result["interactions"]}
    assert found == {
        (("Coumadin", "Advil 200 mg"), ("warfarin", "ibuprofen"), "major"),
        (("Coumadin", "Flagyl"), ("warfarin", "metronidazole"), "moderate"),
        (("Advil 200 mg", "lisinopril"), ("ibuprofen", "lisinopril"), "moderate"),
    }
    assert result["interactions"][0]["severity"] == "major", "most severe first"
    first = result["interactions"][0]
    assert "bleeding" in first["description"].lower() and first["mechanism"] and first["management"]
    assert result["interactions_found"] == 3 and result["highest_severity"] == "major"
    assert result["unmatched"] == ["Unobtainium"]
    assert result["checked_as"]["Coumadin"] == "warfarin"
    assert result["table"]["name"] == "demo" and result["table"]["version"] == "0.1.0"
    assert len(result["table"]["sha256"]) == 64
    assert "does not mean the combination is safe" in result["notice"]

    logs, _ = await app.engine.logs(done.id)
    assert logs and not any(m.lower() in e.message.lower() for e in logs for m in ["warfarin", *medications])
    sums = await app.store.counter_sums(
        "clinic-a", done.created_at, done.completed_at + _SECOND, ["interactions_found"]
    )
    assert [(s.kind, s.total) for s in sums] == [("interaction_check", 3)]


async def test_no_interaction_found_is_reported_as_not_found_not_as_safe(app: Conveyor) -> None:
    await load_sample(app)
    done = await check(app, ["metformin", "Zolpidem 10 mg"])
    result = done.result
    assert result["interactions"] == [] and result["highest_severity"] is None and result["unmatched"] == []
    assert "no interaction found does not mean the combination is safe" in result["notice"]


async def test_a_brand_and_its_ingredient_are_one_medicine(app: Conveyor) -> None:
    await load_sample(app)
    result = (await check(app, ["Coumadin", "warfarin"])).result
    assert result["interactions"] == [] and result["checked_as"] == {"Coumadin": "warfarin", "warfarin": "warfarin"}


async def test_with_no_table_loaded_the_job_fails_saying_so_without_naming_a_medicine(app: Conveyor) -> None:
    done = await check(app, ["warfarin", "aspirin"])
    assert done.status is Status.FAILED and done.attempt == 1, "not worth retrying until an operator acts"
    message = done.error["message"]
    assert "no drug interaction table is loaded" in message and "load-interactions" in message
    assert "warfarin" not in json.dumps(done.error) and "aspirin" not in json.dumps(done.error)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"user_id": "p", "medications": ["warfarin"]}, "medications"),
        ({"user_id": "p", "medications": [f"drug {n}" for n in range(51)]}, "medications"),
        ({"user_id": "p", "medications": ["warfarin", "  "]}, "medications.1"),
        ({"user_id": "", "medications": ["a", "b"]}, "user_id"),
        ({"medications": ["a", "b"]}, "user_id"),
        ({"user_id": "p", "medications": ["a", "b"], "dose": 1}, "dose"),
    ],
)
async def test_interaction_check_input_is_refused_naming_the_field(
    app: Conveyor, data: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidJobData) as caught:
        await app.engine.enqueue("interaction_check", data, owner=OWNER)
    assert [e["field"] for e in caught.value.errors] == [field]


class _Failing:
    async def check(self, names: list[str]) -> Any:
        raise RuntimeError(f"could not read the rows for {names}")


async def test_a_failure_reading_the_table_is_retried_without_naming_a_medicine(app: Conveyor) -> None:
    app.engine.services["interactions"] = _Failing()
    data = {"user_id": "patient-7", "medications": ["warfarin", "aspirin"]}
    job = await app.engine.enqueue("interaction_check", data, owner=OWNER, max_retries=0)
    async with running_worker(app):
        done = await app.engine.wait(job.id, timeout=30)
    assert done.status is Status.FAILED
    assert done.error["message"] == "reading the interaction table failed (RuntimeError)"
    assert "warfarin" not in json.dumps(done.error)
