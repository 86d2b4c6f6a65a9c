"""Sealing: where a sensitive job type's data, result, log messages and error records are sealed
before they are stored and opened after they are read (conveyor.crypto does the cryptography).

The engine seals a job's data as it prepares it and opens data, results and errors as it reads
jobs; the worker opens data before running and seals results, errors (the job's last error and
its per-item errors) and log lines before writing them. A job type not marked sensitive is left
alone, so the cost falls only where it is asked for. Values a process cannot open (its keys lack
the one they were sealed with) stay sealed in what it reads, rather than failing the read.

An error record keeps its shape when sealed, so that every reader (API schema, client models,
CLI, dashboard) shows one without the key: the keys that are safe stay, and `message` holds the
rest of the record — message, traceback, item, details — as one sealed text (JSON inside).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from conveyor.crypto import Keyring, SealError, aad, is_sealed, is_sealed_text
from conveyor.errors import InvalidJobOptions
from conveyor.jobtypes import Registry
from conveyor.model import Job, LogEntry, Outcome, ProgressUpdate

# What of an error record stays in the clear. The exception's class name, its code and whether
# it is retried are written by code, never copied from a job's input, and let an operator triage
# failures (which kind of error, how many, retried or not) without the key. A value is kept only
# when it has that form — a class name, a machine code such as TIMEOUT, WEBHOOK_REJECTED or
# JOB002 (capitals, digits, `_.:-`, no spaces), a boolean — so that a job which put free text
# (a name, a sentence) in `code` has it sealed with the message rather than stored in plain.
_CLASS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,127}")
_MACHINE_CODE = re.compile(r"[A-Z][A-Z0-9_.:-]{0,63}")
_PLAIN_FORMS: dict[str, Callable[[Any], bool]] = {
    "type": lambda v: isinstance(v, str) and _CLASS_NAME.fullmatch(v) is not None,
    "code": lambda v: v is None or (isinstance(v, str) and _MACHINE_CODE.fullmatch(v) is not None),
    "retryable": lambda v: isinstance(v, bool),
}
ERROR, ITEM_ERROR = "error", "item_error"  # what a sealed error text is bound to, with the job's id

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
        fields = [name for name, value in (("data", job.data), ("result", job.result)) if is_sealed(value)]
        if is_sealed_error(job.error):
            fields.append("error")
        if any(is_sealed_error(e) for e in job.item_errors):
            fields.append("item_errors")
        return fields

    @staticmethod
    def any_sealed_log(logs: Sequence[LogEntry]) -> bool:
        return any(is_sealed_text(e.message) for e in logs)

    def opened(self, job: Job) -> Job:
        """`job` with its data, result and errors opened where this process holds the key."""
        if self.keyring is None or not self.sealed_fields(job):
            return job
        return dataclasses.replace(
            job,
            data=self._try_open(job.data, job.id, "data"),
            result=self._try_open(job.result, job.id, "result"),
            error=self._open_error(job.error, job.id, ERROR),
            item_errors=[self._open_error(e, job.id, ITEM_ERROR) for e in job.item_errors],
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
        if (outcome.result is None and outcome.error is None) or self.keyring is None or not self.sensitive(job.kind):
            return outcome
        result = outcome.result
        if result is not None:
            result = self.keyring.seal_json(result, aad(job.id, "result"))
        return dataclasses.replace(outcome, result=result, error=self._seal_error(outcome.error, job.id, ERROR))

    def seal_progress(self, job: Job, update: ProgressUpdate | None) -> ProgressUpdate | None:
        """A progress report with its per-item errors sealed (each flush seals the list anew:
        the context keeps them in the clear, as the job reported them)."""
        if update is None or not update.item_errors or self.keyring is None or not self.sensitive(job.kind):
            return update
        sealed = [self._seal_error(e, job.id, ITEM_ERROR) for e in update.item_errors]
        return dataclasses.replace(update, item_errors=sealed)

    def _seal_error(self, error: Any, job_id: object, field: str) -> Any:
        # Sealed whatever its message looks like: one that merely starts like a sealed text is
        # still the job's own words.
        if not isinstance(error, dict) or self.keyring is None:
            return error
        plain = {k: v for k, v in error.items() if k in _PLAIN_FORMS and _PLAIN_FORMS[k](v)}
        rest = {k: v for k, v in error.items() if k not in plain}
        shown = {"item": None} if field == ITEM_ERROR else {}  # an item error's shape: item, message, code
        text = json.dumps(rest, separators=(",", ":"), default=str)
        return shown | plain | {"message": self.keyring.seal_text(text, aad(job_id, field))}

    def _open_error(self, error: Any, job_id: object, field: str) -> Any:
        if self.keyring is None or not is_sealed_error(error):
            return error
        try:
            rest = json.loads(self.keyring.open_text(error["message"], aad(job_id, field)))
        except SealError:
            return error
        return {k: v for k, v in error.items() if k != "message"} | rest

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


def is_sealed_error(error: Any) -> bool:
    """An error record (a job's last error, or one item error) whose message is sealed."""
    return isinstance(error, dict) and is_sealed_text(error.get("message"))


def _reseal_error(keyring: Keyring, error: Any, job_id: object, field: str) -> Any:
    """`error` with its sealed text sealed anew with the current key (as it is otherwise)."""
    kid = keyring.kid_of(error.get("message")) if isinstance(error, dict) else None
    if kid is None or kid == keyring.current:
        return error
    bound = aad(job_id, field)
    return {**error, "message": keyring.seal_text(keyring.open_text(error["message"], bound), bound)}


async def rotate_keys(store: Any, sealing: Sealing, *, batch: int = 500) -> dict[str, int]:
    """Re-seal with the current key every sealed job field (data, result, last error, per-item
    errors), log line, pack-state value, notification body and webhook secret sealed with
    another, a batch at a time, while everything runs (every configured key still opens what it
    sealed). How many of each were re-sealed: `job_errors` counts error records, a job's last
    error and each of its item errors."""
    from conveyor.engine.notifications import rotate_bodies
    from conveyor.engine.packstate import PackState
    from conveyor.engine.webhooks import rotate_secrets

    keyring = sealing.keyring
    if keyring is None:
        raise SealError("no encryption key is configured (CONVEYOR_ENCRYPTION_KEYS)")
    kinds = [k for k in sealing.registry.kinds() if sealing.sensitive(k)]
    fields = errors = lines = 0
    after = None
    while kinds:
        page = await store.sealed_jobs_page(kinds, after, batch)
        for job_id, data, result, error, item_errors in page:
            for field, value in (("data", data), ("result", result)):
                kid = keyring.kid_of(value)
                if kid is None or kid == keyring.current:
                    continue
                bound = aad(job_id, field)
                resealed = keyring.seal_json(keyring.open_json(value, bound), bound)
                fields += await store.replace_sealed(job_id, field, value, resealed)
            resealed_error = _reseal_error(keyring, error, job_id, ERROR)
            if resealed_error is not error and await store.replace_sealed(job_id, "error", error, resealed_error):
                errors += 1
            items = item_errors or []
            resealed_items = [_reseal_error(keyring, e, job_id, ITEM_ERROR) for e in items]
            changed = sum(new is not old for new, old in zip(resealed_items, items, strict=True))
            if changed and await store.replace_sealed(job_id, "item_errors", items, resealed_items):
                errors += changed
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
    secrets = await rotate_secrets(store, keyring, batch)
    return {
        "job_fields": fields,
        "job_errors": errors,
        "log_lines": lines,
        "state_values": state_values,
        "notifications": bodies,
        "webhook_secrets": secrets,
    }
