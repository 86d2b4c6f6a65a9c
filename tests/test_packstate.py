"""Pack state on both databases: sealed documents per owner scope with compare-and-set
versions, reached from jobs through ctx.state, isolated between organisations, and holding
no plaintext at rest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from conftest import TEST_ENCRYPTION, make_settings, running_worker
from jobtypes_for_tests import jobtypes

from conveyor import Conveyor
from conveyor.errors import PermanentError, StateConflict
from conveyor.model import Owner
from conveyor.store.migrate import sync_engine

ORG_A, ORG_B = Owner(user_id="alice", org_id="org-a"), Owner(user_id="bob", org_id="org-b")
LONER = Owner(user_id="carol")  # no organisation: her own scope
SECRET = "warfarin 5 mg for patient 4411"


@pytest.fixture
async def keyed(database_url: str) -> AsyncIterator[Conveyor]:
    app = Conveyor.from_settings(make_settings(database_url, **TEST_ENCRYPTION), registries=[jobtypes])
    await app.start()
    yield app
    await app.close()


def raw_state(database_url: str) -> str:
    engine = sync_engine(database_url)
    try:
        with engine.connect() as conn:
            return "\n".join(str(r) for r in conn.execute(sa.text("SELECT * FROM conveyor_pack_state")))
    finally:
        engine.dispose()


async def test_documents_are_versioned_and_compare_and_set(keyed: Conveyor) -> None:
    state = keyed.state.namespace(ORG_A, "clinic")
    assert await state.get("ward-7") is None
    first = await state.put("ward-7", {"beds": 12}, version=None)
    assert (first.value, first.version) == ({"beds": 12}, 1)
    with pytest.raises(StateConflict):
        await state.put("ward-7", {"beds": 0}, version=None)  # exists already
    second = await state.put("ward-7", {"beds": 11}, version=1)
    assert second.version == 2
    with pytest.raises(StateConflict):
        await state.put("ward-7", {"beds": 10}, version=1)  # a stale read loses
    assert (await state.get("ward-7")).value == {"beds": 11}  # type: ignore[union-attr]
    assert (await state.put("ward-7", {"beds": 9})).version == 3  # no version: replaces whatever is there
    assert not await state.delete("ward-7", version=2)
    assert await state.delete("ward-7", version=3)
    assert await state.get("ward-7") is None


async def test_list_pages_by_prefix_in_key_order(keyed: Conveyor) -> None:
    state = keyed.state.namespace(ORG_A, "clinic")
    for key in ("ward-2", "ward-1", "bed_1", "ward_x", "ward-3"):
        await state.put(key, {"k": key})
    assert [d.key for d in await state.list("ward-")] == ["ward-1", "ward-2", "ward-3"]  # '_' and '%' are literal
    assert [d.key for d in await state.list("ward-", after="ward-1", limit=1)] == ["ward-2"]
    assert [d.value["k"] for d in await state.list("bed_")] == ["bed_1"]


async def test_scopes_and_namespaces_are_isolated(keyed: Conveyor) -> None:
    await keyed.state.namespace(ORG_A, "clinic").put("shared-name", {"org": "a"})
    await keyed.state.namespace(LONER, "clinic").put("shared-name", {"user": "carol"})
    assert await keyed.state.namespace(ORG_B, "clinic").get("shared-name") is None
    assert await keyed.state.namespace(ORG_A, "other").get("shared-name") is None
    # Another member of org-a shares the organisation's state; carol alone sees hers.
    same_org = Owner(user_id="someone-else", org_id="org-a")
    assert (await keyed.state.namespace(same_org, "clinic").get("shared-name")).value == {"org": "a"}  # type: ignore[union-attr]
    assert (await keyed.state.namespace(LONER, "clinic").get("shared-name")).value == {"user": "carol"}  # type: ignore[union-attr]
    assert await keyed.state.namespace(Owner(user_id="dave"), "clinic").get("shared-name") is None


async def test_values_are_sealed_at_rest_and_bound_to_their_key(keyed: Conveyor, database_url: str) -> None:
    state = keyed.state.namespace(ORG_A, "clinic")
    await state.put("p-1", {"note": SECRET})
    stored = raw_state(database_url)
    assert "p-1" in stored and SECRET not in stored and "warfarin" not in stored
    # A sealed value copied under another key does not open there.
    engine = sync_engine(database_url)
    try:
        with engine.begin() as conn:
            value = conn.execute(sa.text("SELECT value FROM conveyor_pack_state WHERE key = 'p-1'")).scalar_one()
        await state.put("p-2", {"note": "other"})
        copied = await keyed.store.get_state("org:org-a", "clinic", "p-1")
        await keyed.store.put_state("org:org-a", "clinic", "p-2", copied.value, expected=1)  # type: ignore[union-attr]
    finally:
        engine.dispose()
    assert value is not None
    with pytest.raises(Exception, match="does not open"):
        await state.get("p-2")


async def test_no_key_no_state(database_url: str) -> None:
    app = Conveyor.from_settings(make_settings(database_url), registries=[jobtypes])
    await app.start()
    try:
        with pytest.raises(PermanentError, match="encryption key"):
            await app.state.namespace(ORG_A, "clinic").put("k", {"a": 1})
    finally:
        await app.close()


async def test_jobs_racing_on_one_document_lose_no_update(keyed: Conveyor) -> None:
    """Twenty jobs of org-a increment one counter through ctx.state at once (four at a time on
    the worker): every increment lands; org-b's job counts in its own scope."""
    jobs = [await keyed.engine.enqueue("t.tally", {}, owner=ORG_A) for _ in range(20)]
    other = await keyed.engine.enqueue("t.tally", {}, owner=ORG_B)
    async with running_worker(keyed, concurrency=4):
        done = await asyncio.gather(*(keyed.engine.wait(j.id, timeout=30) for j in [*jobs, other]))
    assert all(j.status.value == "completed" for j in done), [(j.status, j.error, j.attempt) for j in done]
    assert sorted(j.result["runs"] for j in done[:-1]) == list(range(1, 21))
    assert done[-1].result == {"runs": 1, "version": 1}
    final = await keyed.state.namespace(ORG_A, "tests").get("tally")
    assert final is not None and final.value == {"runs": 20} and final.version == 20
