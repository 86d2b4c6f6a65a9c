"""Sealing: where a sensitive job type's data, result and log messages are sealed before they
are stored and opened after they are read (conveyor.crypto does the cryptography).

The engine seals a job's data as it prepares it and opens data and results as it reads jobs;
the worker opens data before running and seals results and log lines before writing them. A
job type not marked sensitive is left alone, so the cost falls only where it is asked for.
Values a process cannot open (its keys lack the one they were sealed with) stay sealed in
what it reads, rather than failing the read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from conveyor.crypto import Keyring, SealError, aad, is_sealed, is_sealed_text
from conveyor.errors import InvalidJobOptions
from conveyor.jobtypes import Registry
from conveyor.model import Job, LogEntry, Outcome

# What a caller whose role may not read sensitive data sees in place of each sealed value.
MASK = "[masked]"


class Sealing:
    def __init__(self, registry: Registry, keyring: Keyring | None) -> None:
        self.registry = registry
        self.keyring = keyring

    def sensitive(self, kind: str) -> bool:
        return kind in self.registry and self.registry.get(kind).sensitive

    def seal_data(self, kind: str, job_id: object, data: Any) -> Any:
        if not self.sensitive(kind):
            return data
        if self.keyring is None:
            raise InvalidJobOptions(
                f"job type {kind!r} is sensitive: its data is stored encrypted, and no encryption key is "
                "configured (CONVEYOR_ENCRYPTION_KEYS)",
                field="type",
            )
        return self.keyring.seal_json(data, aad(job_id, "data"))

    def open_data(self, job: Job) -> Any:
        """The job's data to run it with; SealError if it cannot be opened here."""
        if not is_sealed(job.data):
            return job.data
        if self.keyring is None:
            raise SealError("the job's data is sealed and no encryption key is configured here")
        return self.keyring.open_json(job.data, aad(job.id, "data"))

    @staticmethod
    def sealed_fields(job: Job) -> list[str]:
        """Which of the job's stored fields are sealed (what opening it reveals)."""
        return [name for name, value in (("data", job.data), ("result", job.result)) if is_sealed(value)]

    @staticmethod
    def any_sealed_log(logs: Sequence[LogEntry]) -> bool:
        return any(is_sealed_text(e.message) for e in logs)

    def opened(self, job: Job) -> Job:
        """`job` with its data and result opened where this process holds the key."""
        if self.keyring is None or not (is_sealed(job.data) or is_sealed(job.result)):
            return job
        return dataclasses.replace(
            job, data=self._try_open(job.data, job.id, "data"), result=self._try_open(job.result, job.id, "result")
        )

    def masked(self, job: Job) -> Job:
        """`job` as a caller who may not read sensitive data sees it: sealed data keeps its
        top-level field names (the job type's schema, not the person's values) with every value
        masked; a sealed result is masked whole. No value is revealed, so no read is recorded."""
        if not (is_sealed(job.data) or is_sealed(job.result)):
            return job
        data: Any = job.data
        if is_sealed(data):
            opened = self._try_open(data, job.id, "data")
            data = {name: MASK for name in opened} if isinstance(opened, dict) and not is_sealed(opened) else MASK
        result = MASK if is_sealed(job.result) else job.result
        return dataclasses.replace(job, data=data, result=result)

    @staticmethod
    def masked_fields(job: Job) -> list[str]:
        """Which fields of a job from `masked` were masked."""
        data = job.data
        data_masked = data == MASK or (isinstance(data, dict) and bool(data) and all(v == MASK for v in data.values()))
        return [name for name, masked in (("data", data_masked), ("result", job.result == MASK)) if masked]

    @staticmethod
    def masked_logs(logs: Sequence[LogEntry]) -> list[LogEntry]:
        return [dataclasses.replace(e, message=MASK) if is_sealed_text(e.message) else e for e in logs]

    def _try_open(self, value: Any, job_id: object, field: str) -> Any:
        try:
            return self.keyring.open_json(value, aad(job_id, field)) if self.keyring else value
        except SealError:
            return value

    def seal_outcome(self, job: Job, outcome: Outcome) -> Outcome:
        if outcome.result is None or self.keyring is None or not self.sensitive(job.kind):
            return outcome
        return dataclasses.replace(outcome, result=self.keyring.seal_json(outcome.result, aad(job.id, "result")))

    def seal_logs(self, job: Job, logs: list[LogEntry]) -> list[LogEntry]:
        if not logs or self.keyring is None or not self.sensitive(job.kind):
            return logs
        bound = aad(job.id, "log")
        return [dataclasses.replace(e, message=self.keyring.seal_text(e.message, bound)) for e in logs]

    def open_logs(self, logs: Sequence[LogEntry]) -> list[LogEntry]:
        return [self._open_log(e) for e in logs]

    def _open_log(self, entry: LogEntry) -> LogEntry:
        if self.keyring is None or not is_sealed_text(entry.message):
            return entry
        try:
            return dataclasses.replace(entry, message=self.keyring.open_text(entry.message, aad(entry.job_id, "log")))
        except SealError:
            return entry


async def rotate_keys(store: Any, sealing: Sealing, *, batch: int = 500) -> dict[str, int]:
    """Re-seal with the current key every sealed job field, log line, pack-state value and
    notification body sealed with another, a batch at a time, while everything runs (every
    configured key still opens what it sealed). How many of each were re-sealed."""
    from conveyor.engine.notifications import rotate_bodies
    from conveyor.engine.packstate import PackState

    keyring = sealing.keyring
    if keyring is None:
        raise SealError("no encryption key is configured (CONVEYOR_ENCRYPTION_KEYS)")
    kinds = [k for k in sealing.registry.kinds() if sealing.sensitive(k)]
    fields = lines = 0
    after = None
    while kinds:
        page = await store.sealed_jobs_page(kinds, after, batch)
        for job_id, data, result in page:
            for field, value in (("data", data), ("result", result)):
                kid = keyring.kid_of(value)
                if kid is None or kid == keyring.current:
                    continue
                bound = aad(job_id, field)
                resealed = keyring.seal_json(keyring.open_json(value, bound), bound)
                fields += await store.replace_sealed(job_id, field, value, resealed)
        if len(page) < batch:
            break
        after = page[-1][0]
    last = 0
    while page_of_logs := await store.sealed_logs_page(last, batch, keyring.current):
        bound_texts = [
            (log_id, keyring.seal_text(keyring.open_text(text, aad(job_id, "log")), aad(job_id, "log")))
            for log_id, job_id, text in page_of_logs
        ]
        await store.replace_log_messages(bound_texts)
        lines += len(bound_texts)
        last = page_of_logs[-1][0]
    state_values = await PackState(store, keyring).rotate(batch)
    bodies = await rotate_bodies(store, keyring, batch)
    return {"job_fields": fields, "log_lines": lines, "state_values": state_values, "notifications": bodies}
