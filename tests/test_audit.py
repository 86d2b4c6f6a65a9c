"""The audit trail's chain on both databases: every kind of tampering done with raw SQL is
found by verify, records written from many connections and processes at once are sealed into
one chain, jobs are recorded with the statement that stores them, and on PostgreSQL the
triggers refuse changes by the application's own role."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from conftest import running_scheduler, running_worker

from conveyor import Conveyor, JobRequest, Owner
from conveyor.audit import SYSTEM, Actor, acting_as, record_hash
from conveyor.engine.audit import Audit
from conveyor.model import Outcome, OutcomeKind, utc_now
from conveyor.store.migrate import sync_engine

ALICE = Actor(user_id="alice", name="Alice A", org_id="org-a", request_id="req_1", client_address="10.0.0.1")


async def fill(app: Conveyor, n: int, audit: Audit | None = None, *, seal: bool = True) -> None:
    audit = audit or app.audit
    for i in range(n):
        await audit.record("test.done", "thing", i, before={"i": i}, after={"i": i + 1}, actor=ALICE)
    if seal:
        await audit.seal()


@pytest.fixture
def raw(database_url: str) -> Iterator[Any]:
    """Run SQL as whoever can write to the database, with the triggers out of the way (as the
    tables' owner can): the tampering verify is there to find."""
    engine = sync_engine(database_url)

    def run(*statements: str, **params: Any) -> None:
        with engine.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            if postgres:
                conn.execute(sa.text("ALTER TABLE conveyor_audit DISABLE TRIGGER USER"))
                conn.execute(sa.text("ALTER TABLE conveyor_audit_checkpoints DISABLE TRIGGER USER"))
            for statement in statements:
                conn.execute(sa.text(statement), params)
            if postgres:
                conn.execute(sa.text("ALTER TABLE conveyor_audit ENABLE TRIGGER USER"))
                conn.execute(sa.text("ALTER TABLE conveyor_audit_checkpoints ENABLE TRIGGER USER"))

    yield run
    engine.dispose()


async def test_records_wait_in_the_journal_until_sealed(app: Conveyor) -> None:
    await fill(app, 3, seal=False)
    assert await app.store.audit_page(0, 10) == [] and await app.store.audit_unsealed() == 3
    assert await app.audit.seal() == 3
    assert [r.seq for r in await app.store.audit_page(0, 10)] == [1, 2, 3]
    assert await app.store.audit_unsealed() == 0 and await app.audit.seal() == 0


async def test_a_seal_leaves_records_journaled_while_it_runs_to_the_next_one(
    app: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under load the journal never empties: a seal that chased it sealed a few rows at a time
    # for as long as the load lasted.
    await fill(app, 3, seal=False)
    seal_audit = app.store.seal_audit
    calls = 0

    async def journaling_meanwhile(*args: Any, **kwargs: Any) -> int | None:
        nonlocal calls
        calls += 1
        made = await seal_audit(*args, **kwargs)
        await app.audit.record("test.meanwhile", "thing", calls, actor=ALICE)
        return made

    monkeypatch.setattr(app.store, "seal_audit", journaling_meanwhile)
    assert await app.audit.seal() == 3
    assert calls == 2  # the three, then a look that finds nothing older than the call
    assert await app.store.audit_unsealed() == 2
    monkeypatch.undo()
    assert await app.audit.seal() == 2
    assert [r.action for r in await app.store.audit_page(0, 10)] == ["test.done"] * 3 + ["test.meanwhile"] * 2
    assert (await app.audit.verify()).ok


async def test_records_chain_and_verify(app: Conveyor) -> None:
    await fill(app, 5)
    verdict = await app.audit.verify(page_size=2)  # pages of 2: the walk crosses page edges
    assert verdict.ok and verdict.records == 5 and verdict.head_seq == 5, verdict
    page = await app.store.audit_page(0, 10)
    assert [r.seq for r in page] == [1, 2, 3, 4, 5]
    assert page[0].prev_hash == "0" * 64 and page[1].prev_hash == page[0].hash
    first = page[0]
    assert (first.actor_id, first.actor_name, first.org_id, first.request_id, first.client_address) == (
        "alice", "Alice A", "org-a", "req_1", "10.0.0.1"
    )  # fmt: skip
    assert (first.before, first.after) == ({"i": 0}, {"i": 1})


TAMPERING = {
    "altered field": (["UPDATE conveyor_audit SET actor_id = 'mallory' WHERE seq = 3"], 3, "hash mismatch"),
    "deleted middle record": (["DELETE FROM conveyor_audit WHERE seq = 3"], 3, "sequence break"),
    "deleted and renumbered": (
        ["DELETE FROM conveyor_audit WHERE seq = 3", "UPDATE conveyor_audit SET seq = seq - 1 WHERE seq > 3"],
        3,
        "prev_hash does not link",
    ),
    "two records swapped": (
        [
            "UPDATE conveyor_audit SET seq = -1 WHERE seq = 2",
            "UPDATE conveyor_audit SET seq = 2 WHERE seq = 3",
            "UPDATE conveyor_audit SET seq = 3 WHERE seq = -1",
        ],
        2,
        "prev_hash does not link",
    ),
}


@pytest.mark.parametrize("tampering", TAMPERING)
async def test_tampering_is_found_at_the_first_broken_record(app: Conveyor, raw: Any, tampering: str) -> None:
    statements, broken_seq, problem = TAMPERING[tampering]
    await fill(app, 5)
    raw(*statements)
    verdict = await app.audit.verify()
    assert not verdict.ok and verdict.broken_seq == broken_seq and problem in (verdict.problem or ""), verdict


async def test_forged_record_inserted_in_the_middle_breaks_the_link(app: Conveyor, raw: Any) -> None:
    await fill(app, 5)
    [second] = await app.store.audit_page(1, 1)
    forged = {
        **second.fields(),
        "seq": 3,
        "prev_hash": second.hash,
        "actor_id": "mallory",
        "before": None,
        "after": None,
    }
    forged["hash"] = record_hash(forged)  # well-formed, and linked to its predecessor
    raw(
        "UPDATE conveyor_audit SET seq = seq + 1000 WHERE seq >= 3",
        "UPDATE conveyor_audit SET seq = seq - 999 WHERE seq > 1000",
    )
    raw(
        "INSERT INTO conveyor_audit (seq, recorded_at, actor_id, actor_name, action, object_type, object_id,"
        " request_id, client_address, org_id, prev_hash, hash) SELECT 3, recorded_at, 'mallory', actor_name, action,"
        " object_type, object_id, request_id, client_address, org_id, :prev, :hash FROM conveyor_audit WHERE seq = 2",
        prev=forged["prev_hash"],
        hash=forged["hash"],
    )
    verdict = await app.audit.verify()
    # the forged record itself checks out; the record after it no longer links
    assert not verdict.ok and verdict.broken_seq == 4 and "prev_hash does not link" in (verdict.problem or ""), verdict


async def test_cut_off_tail_is_found_by_the_checkpoint(app: Conveyor, raw: Any) -> None:
    await fill(app, 5)
    checkpoint = await app.audit.checkpoint()
    assert checkpoint is not None and checkpoint.seq == 5
    raw("DELETE FROM conveyor_audit WHERE seq >= 4")
    verdict = await app.audit.verify()
    assert not verdict.ok and "cut-off tail" in (verdict.problem or ""), verdict


async def test_checkpoints_are_taken_when_a_seal_passes_every_nth_record(app: Conveyor) -> None:
    audit = Audit(app.store, checkpoint_every=3)
    for n in (2, 2, 3):  # heads 2, 4 (passed 3), 7 (passed 6)
        await fill(app, n, audit)
    assert [c.seq for c in await app.store.audit_checkpoints()] == [4, 7]
    verdict = await audit.verify()
    assert verdict.ok and verdict.checkpoints == 2 and not verdict.signed and verdict.warnings


async def _rewrite_chain_from(app: Conveyor, raw: Any, seq: int) -> None:
    """What someone who can write to the database but holds no key can do: alter a record and
    recompute every hash after it, so that the chain is consistent again."""
    records = await app.store.audit_page(0, 1000)
    prev = records[seq - 2].hash if seq > 1 else "0" * 64
    for record in records[seq - 1 :]:
        fields = {**record.fields(), "prev_hash": prev}
        if record.seq == seq:
            fields["actor_id"] = "mallory"
        fields["hash"] = record_hash(fields)
        raw(
            "UPDATE conveyor_audit SET actor_id = :actor, prev_hash = :prev, hash = :hash WHERE seq = :seq",
            actor=fields["actor_id"], prev=fields["prev_hash"], hash=fields["hash"], seq=record.seq,
        )  # fmt: skip
        prev = fields["hash"]


async def test_a_rewritten_chain_fails_a_signed_checkpoint(app: Conveyor, raw: Any) -> None:
    audit = Audit(app.store, key="k" * 32, checkpoint_every=1000)
    await fill(app, 5, audit)
    await audit.checkpoint()
    await _rewrite_chain_from(app, raw, 2)
    verdict = await audit.verify()
    assert not verdict.ok and verdict.broken_seq == 5 and "checkpoint" in (verdict.problem or "")
    # The checkpoint rewritten as well: without the key its signature cannot be made.
    head = (await app.store.audit_page(4, 1))[0]
    raw("UPDATE conveyor_audit_checkpoints SET hash = :hash", hash=head.hash)
    verdict = await audit.verify()
    assert not verdict.ok and "not signed by the audit key" in (verdict.problem or "")
    assert (await Audit(app.store, key="another key").verify()).ok is False


async def test_concurrent_records_and_seals_keep_one_chain(app: Conveyor) -> None:
    async def appender(n: int) -> None:
        for i in range(10):
            await app.audit.record("test.concurrent", "thing", f"{n}-{i}")
            if i % 3 == 0:
                await app.audit.seal()

    await asyncio.gather(*(appender(n) for n in range(8)))
    verdict = await app.audit.verify()
    assert verdict.ok and verdict.records == 80, verdict
    page = await app.store.audit_page(0, 100)
    assert sorted(r.object_id for r in page) == sorted(f"{n}-{i}" for n in range(8) for i in range(10))


async def test_postgres_triggers_refuse_changes_by_the_owner(app: Conveyor, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no roles; verify is its only guard")
    await fill(app, 2)
    await app.audit.checkpoint()
    await fill(app, 1, seal=False)  # one in the journal: its rows are never changed either
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in [
            "UPDATE conveyor_audit SET actor_id = 'mallory'",
            "DELETE FROM conveyor_audit WHERE seq = 1",
            "TRUNCATE conveyor_audit",
            "DELETE FROM conveyor_audit_checkpoints",
            "UPDATE conveyor_audit_journal SET actor_id = 'mallory'",
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
    assert (await app.audit.verify()).ok


APPENDER = """
import asyncio, sys
from conveyor import Conveyor, Settings

async def main() -> None:
    async with Conveyor.from_settings(Settings(database_url=sys.argv[1], auto_migrate=False)) as app:
        for i in range(15):
            await app.audit.record("test.process", "thing", f"{sys.argv[2]}-{i}")
            if i % 4 == 0:
                await app.audit.seal()

asyncio.run(main())
"""


async def test_appends_from_several_processes_keep_one_chain(app: Conveyor, database_url: str) -> None:
    processes = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", APPENDER, database_url, str(n)) for n in range(3)
    ]
    assert [await p.wait() for p in processes] == [0, 0, 0]
    verdict = await app.audit.verify()
    assert verdict.ok and verdict.records == 45, verdict


async def created_records(app: Conveyor) -> list[Any]:
    await app.audit.seal()
    return [r for r in await app.store.audit_page(0, 10_000) if r.action == "job.created"]


async def test_an_enqueued_job_is_recorded_with_who_asked(app: Conveyor) -> None:
    with acting_as(ALICE):
        job = await app.engine.enqueue("noop", {}, idempotency_key="once")
        again = await app.engine.enqueue("noop", {}, idempotency_key="once")
    assert again.id == job.id
    [record] = await created_records(app)  # the second call stored nothing, and recorded nothing
    assert (record.object_type, record.object_id, record.actor_id, record.actor_name) == (
        "job", str(job.id), "alice", "Alice A"
    )  # fmt: skip
    assert (record.request_id, record.client_address, record.org_id) == ("req_1", "10.0.0.1", "org-a")
    assert record.after["kind"] == "noop" and record.after["status"] == "pending" and record.before is None


async def test_a_job_without_an_actor_is_recorded_as_the_system(app: Conveyor) -> None:
    job = await app.engine.enqueue("noop", {})
    [record] = await created_records(app)
    assert (record.object_id, record.actor_id, record.org_id) == (str(job.id), SYSTEM, None)


async def test_concurrent_enqueues_each_have_their_own_record(app: Conveyor) -> None:
    # Concurrent single enqueues share statements (the coalescer): each keeps its own actor.
    async def one(n: int) -> Any:
        with acting_as(Actor(user_id=f"user-{n}", org_id="org-a")):
            return await app.engine.enqueue("noop", {})

    made = await asyncio.gather(*(one(n) for n in range(40)))
    records = await created_records(app)
    assert {r.object_id: r.actor_id for r in records} == {str(j.id): f"user-{n}" for n, j in enumerate(made)}
    assert (await app.audit.verify()).ok


async def test_every_bulk_enqueued_job_is_named_by_a_record(app: Conveyor) -> None:
    with acting_as(ALICE):
        made = await app.engine.enqueue_many([JobRequest("noop", {}) for _ in range(2500)])
    named: list[str] = []
    for r in await created_records(app):
        assert (r.actor_id, r.org_id) == ("alice", "org-a")
        # One record per job, or (PostgreSQL's COPY path) one per batch listing its jobs.
        named.extend(r.after["jobIds"] if r.object_id is None else [r.object_id])
    assert sorted(named) == sorted(str(j.id) for j in made)


async def test_the_scheduler_leader_seals_the_journal_as_it_runs(app: Conveyor) -> None:
    await fill(app, 3, seal=False)
    scheduler = app.scheduler(interval=timedelta(milliseconds=50), lease=timedelta(seconds=5))
    async with running_scheduler(scheduler), asyncio.timeout(10):
        while await app.store.audit_unsealed():  # noqa: ASYNC110 - polling the database is the point
            await asyncio.sleep(0.05)
    assert [r.object_id for r in await app.store.audit_page(0, 10)] == ["0", "1", "2"]


async def test_finished_jobs_are_named_by_records_of_their_worker(app: Conveyor) -> None:
    org_a = Owner(user_id="alice", org_id="org-a")
    ok = [await app.engine.enqueue("noop", {}, owner=org_a) for _ in range(3)]
    bad = await app.engine.enqueue("t.fail", {"permanent": True, "message": "no"}, owner=org_a)
    await app.engine.enqueue("noop", {})  # another organisation (none): a record of its own
    async with running_worker(app) as worker:
        for job in [*ok, bad]:
            await app.engine.wait(job.id, timeout=10)
    await app.audit.seal()
    finished = [r for r in await app.store.audit_page(0, 100) if r.action in ("job.completed", "job.failed")]
    assert any(r.org_id is None for r in finished)
    records = [r for r in finished if r.org_id is not None]
    named: dict[str, list[str]] = {}
    for r in records:
        assert (r.actor_id, r.actor_name, r.org_id) == (SYSTEM, worker.worker_id, "org-a")
        assert r.object_id is None and r.after["count"] == len(r.after["jobIds"])
        named.setdefault(r.action, []).extend(r.after["jobIds"])
    assert {a: sorted(ids) for a, ids in named.items()} == {
        "job.completed": sorted(str(j.id) for j in ok),
        "job.failed": [str(bad.id)],
    }
    assert (await app.audit.verify()).ok


async def test_retries_releases_and_rescues_are_recorded_in_their_statement(app: Conveyor) -> None:
    org_a = Owner(user_id="alice", org_id="org-a")
    retried = await app.engine.enqueue("t.fail", {"message": "flaky"}, owner=org_a)
    released = await app.engine.enqueue("noop", {}, owner=org_a)
    lost = await app.engine.enqueue("noop", {}, owner=org_a)
    # A worker's outcomes: a retryable failure (scheduled again) and a job handed back.
    [a, b] = await app.store.claim_jobs(["default"], 2, "worker-a", timedelta(seconds=30))
    assert {a.id, b.id} == {retried.id, released.id}
    failure = {"type": "Boom", "message": "flaky", "retryable": True}
    await app.store.flush([
        Outcome(retried.id, 1, "worker-a", OutcomeKind.RETRY, error=failure, run_at=utc_now() + timedelta(hours=1)),
        Outcome(released.id, 1, "worker-a", OutcomeKind.RELEASED),
    ])  # fmt: skip
    # A worker that stopped answering: its job is rescued when the lease runs out.
    [c] = await app.store.claim_jobs(["default"], 1, "worker-b", timedelta(milliseconds=50))
    assert c.id in (lost.id, released.id)
    await asyncio.sleep(0.2)
    assert await app.store.rescue_expired() == [c.id]
    await app.audit.seal()
    records = {r.action: r for r in await app.store.audit_page(0, 100) if r.object_type == "job"}
    assert records["job.retry_scheduled"].after["jobIds"] == [str(retried.id)]
    assert records["job.released"].after["jobIds"] == [str(released.id)]
    assert (records["job.released"].actor_name, records["job.released"].org_id) == ("worker-a", "org-a")
    rescued = records["job.rescued"]
    assert (rescued.actor_id, rescued.actor_name, rescued.org_id) == (SYSTEM, "lease rescue", "org-a")
    assert rescued.after == {"count": 1, "jobIds": [str(c.id)]}
    assert (await app.audit.verify()).ok


async def test_a_seal_takes_no_more_journal_than_its_size_bound_and_seal_takes_it_all(app: Conveyor) -> None:
    # Three bulk enqueues of 2,500: four records each (batches of 200, 1,000, 1,000 and 300
    # jobs), each naming its batch's jobs (~40 kB for 1,000).
    for _ in range(3):
        await app.engine.enqueue_many([JobRequest("noop", {}) for _ in range(2500)])
    waiting = await app.store.audit_unsealed()
    assert waiting == 12
    # A bound smaller than any record: one record a seal (never none, or the journal would stick).
    assert [await app.store.seal_audit(5000, max_bytes=1) for _ in range(3)] == [1, 1, 1]
    assert await app.store.seal_audit(2, max_bytes=10_000_000) == 2  # the row cap still holds
    assert await app.audit.seal() == waiting - 5
    assert await app.store.audit_unsealed() == 0
    page = await app.store.audit_page(0, 100)
    assert sum(r.after["count"] for r in page) == 7500
    assert (await app.audit.verify()).ok


async def test_a_retry_by_hand_and_its_record_commit_together(app: Conveyor, database_url: str) -> None:
    job = await app.engine.enqueue(
        "noop", {}, owner=Owner(user_id="alice", org_id="org-a"), run_at=utc_now() + timedelta(hours=1)
    )
    await app.engine.cancel(job.id)
    # The journal refuses job.retried: the new job must not be stored without its record.
    engine = sync_engine(database_url)
    postgres = engine.dialect.name == "postgresql"
    refuse = (
        [
            "CREATE FUNCTION refuse_retried() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN IF NEW.action = 'job.retried' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER refuse_retried BEFORE INSERT ON conveyor_audit_journal "
            "FOR EACH ROW EXECUTE FUNCTION refuse_retried()",
        ]
        if postgres
        else [
            "CREATE TRIGGER refuse_retried BEFORE INSERT ON conveyor_audit_journal "
            "WHEN NEW.action = 'job.retried' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        ]
    )
    with engine.begin() as conn:
        for statement in refuse:
            conn.execute(sa.text(statement))
    try:
        with pytest.raises(Exception, match="refused"):
            await app.engine.retry(job.id)
        jobs, total = await app.engine.list(limit=10)
        assert total == 1 and jobs[0].retry_of is None
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER refuse_retried" + (" ON conveyor_audit_journal" if postgres else "")))
        engine.dispose()
    again = await app.engine.retry(job.id)
    await app.audit.seal()
    retried = [r for r in await app.store.audit_page(0, 100) if r.action == "job.retried"]
    assert [(r.object_id, r.after) for r in retried] == [(str(job.id), {"retryJobId": str(again.id)})]
    assert (await app.audit.verify()).ok


async def test_sealing_files_the_jobs_a_record_lists_and_nothing_else(app: Conveyor, database_url: str) -> None:
    # The database files them (store/audit.py FILE_SUBJECTS): each string of after.jobIds once,
    # no number, no text too long for the column, nothing for a jobIds that is not a list.
    from conveyor.audit import SYSTEM_ACTOR, AuditEntry

    listing = {"jobIds": ["job-a", 7, "job-a", "x" * 201, "job-b"]}
    await app.store.journal_audit(
        [
            AuditEntry("job.completed", "job", None, SYSTEM_ACTOR, after=listing),
            AuditEntry("job.completed", "job", None, SYSTEM_ACTOR, after={"jobIds": "job-c"}),
            AuditEntry("job.completed", "job", None, SYSTEM_ACTOR, after={"jobIds": {"job-d": 1}}),
            AuditEntry("job.read", "job", "job-e", SYSTEM_ACTOR, after=None),
        ]
    )
    assert await app.audit.seal() == 4
    engine = sync_engine(database_url)
    try:
        with engine.connect() as conn:
            filed = conn.execute(sa.text("SELECT job_id, seq FROM conveyor_audit_subjects ORDER BY job_id")).all()
    finally:
        engine.dispose()
    first = (await app.store.audit_page(0, 1))[0].seq
    assert [tuple(row) for row in filed] == [("job-a", first), ("job-b", first)]
    assert (await app.audit.verify()).ok
