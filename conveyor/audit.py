"""The audit trail's arithmetic (21 CFR Part 11 §11.10(e)): records, their hash chain,
signed checkpoints, and the verifier that walks a chain page by page. No I/O here: the store
appends and reads, conveyor.engine.audit decides what is recorded.

Records are written first to a journal, in the same statement or transaction as the change
they record and with no lock (so recording costs the hot paths one more row, not a turn of a
global lock), and sealed into the chain soon after by one process at a time (`seal`), which
gives each its `seq` and its place after the head. Each record's hash is SHA-256 over its
canonical encoding: every field but `hash` (including `prev_hash`, the previous record's
hash) as sorted-key compact JSON. Changing any field of a
record, or its place in the chain, breaks the hash of that record or the link of the next.
A checkpoint is (seq, hash) of the chain's head at some moment, signed with HMAC-SHA256 when
an audit key is configured; it makes a cut-off tail detectable, and (signed) a chain rewritten
from scratch by someone who can write to the database but does not hold the key.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64  # the prev_hash of record 1
SYSTEM = "system"  # the actor of what no principal asked for (library calls, the scheduler)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, and from where: a principal of the API, the CLI's user, or the system."""

    user_id: str = SYSTEM
    name: str | None = None
    org_id: str | None = None
    request_id: str | None = None
    client_address: str | None = None


SYSTEM_ACTOR = Actor()

_ACTOR: contextvars.ContextVar[Actor] = contextvars.ContextVar("conveyor_audit_actor", default=SYSTEM_ACTOR)


def current_actor() -> Actor:
    """The actor set by the innermost `acting_as` (the API sets one per request), else system."""
    return _ACTOR.get()


@contextlib.contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def set_actor(actor: Actor) -> None:
    """Set the actor for the rest of the current context (an API request's task)."""
    _ACTOR.set(actor)


@dataclass(frozen=True, slots=True)
class SignatureMark:
    """An electronic signature (21 CFR Part 11 §11.50, §11.70) applied to one audit record:
    who signed (user id and printed name), when (server UTC), what it means. Its manifest is
    written into the record it signs (so the chain's hash covers it), and its row in
    conveyor_signatures names that record's content hash (so it cannot be moved to another)."""

    id: str
    signer_id: str
    signer_name: str
    meaning: str
    signed_at: datetime

    def manifest(self) -> dict[str, str]:
        return {
            "id": self.id,
            "signerId": self.signer_id,
            "printedName": self.signer_name,
            "meaning": self.meaning,
            "signedAt": timestamp_text(self.signed_at),
        }


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One thing that happened, before it is given its place in the chain."""

    action: str  # e.g. job.created, schedule.paused, auth.failed
    object_type: str
    object_id: str | None
    actor: Actor
    before: Any = None
    after: Any = None
    org_id: str | None = None  # the organisation the object belongs to
    signature: SignatureMark | None = None  # the e-signature this record carries, if any


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    recorded_at: datetime
    actor_id: str
    actor_name: str | None
    action: str
    object_type: str
    object_id: str | None
    before: Any
    after: Any
    request_id: str | None
    client_address: str | None
    org_id: str | None
    prev_hash: str
    hash: str

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: str
    created_at: datetime
    signature: str | None  # HMAC-SHA256 hex; None: no audit key was configured


def _readable(text: str) -> str:
    if text.isascii() and "\x00" not in text:  # the usual case, at a fraction of the cost
        return text
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def storable_text(value: str | None, limit: int) -> str | None:
    """`value` as a column of `limit` characters can hold it: a caller's text (a JWT's name,
    a bad credential's algorithm) must never stop a record from being written. NULs and lone
    surrogates are replaced; longer text is cut, marked with a trailing ellipsis."""
    if value is None:
        return None
    text = _readable(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return _readable(value)
    if isinstance(value, dict):
        return {_readable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def plain_json(value: Any) -> Any:
    """`value` as the database hands JSON back (so the hash of what is read is that of what was
    written): dict keys as text, tuples as lists, anything else JSON lacks as its text, and
    text no database holds in JSON (NUL, lone surrogates) replaced rather than refused."""
    return None if value is None else _storable(json.loads(json.dumps(value, default=str)))


def timestamp_text(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(fields: dict[str, Any]) -> bytes:
    """The encoding the hash covers: every field but `hash`, sorted keys, compact."""
    body = {k: (timestamp_text(v) if isinstance(v, datetime) else v) for k, v in fields.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def record_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(fields)).hexdigest()


def journal_row(entry: AuditEntry, at: datetime, *, org_id: str | None = None, plain: bool = False) -> dict[str, Any]:
    """The columns of `entry` as the journal stores it until it is sealed into the chain;
    `org_id` names the object's organisation when the entry does not. `plain`: before and
    after are plain JSON already (text keys, no NaN, no NUL), made so by the caller."""
    actor = entry.actor
    org = entry.org_id if entry.org_id is not None else org_id if org_id is not None else actor.org_id
    after = entry.after if plain else plain_json(entry.after)
    if entry.signature is not None:  # the manifest is part of what the record's hash covers
        after = {**(after if isinstance(after, dict) else {"value": after} if after is not None else {})}
        after[SIGNATURE_KEY] = entry.signature.manifest()
    return {
        "recorded_at": at.astimezone(UTC),
        "actor_id": storable_text(actor.user_id, 200),
        "actor_name": storable_text(actor.name, 200),
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": storable_text(entry.object_id, 200),
        "before": entry.before if plain else plain_json(entry.before),
        "after": after,
        "request_id": storable_text(actor.request_id, 64),
        "client_address": storable_text(actor.client_address, 64),
        "org_id": storable_text(org, 200),
    }


# The journal's columns that a chained record keeps (the journal's own id is not among them:
# the chain's order is `seq`).
RECORD_COLUMNS = (
    "recorded_at", "actor_id", "actor_name", "action", "object_type", "object_id", "before", "after",
    "request_id", "client_address", "org_id",
)  # fmt: skip


SIGNATURE_KEY = "signature"  # where a signed record's `after` holds the signature's manifest


def content_hash(fields: dict[str, Any]) -> str:
    """SHA-256 of a record's own content (RECORD_COLUMNS: not its seq nor its link to the
    previous record), known when it is journaled, before it has a place in the chain: what an
    e-signature is bound to."""
    return record_hash({c: fields[c] for c in RECORD_COLUMNS})


def signature_manifest(after: Any) -> dict[str, Any] | None:
    """The signature manifest a record's `after` carries, if any."""
    found = after.get(SIGNATURE_KEY) if isinstance(after, dict) else None
    return found if isinstance(found, dict) else None


def chain(rows: list[dict[str, Any]], *, prev_seq: int, prev_hash: str) -> list[AuditRecord]:
    """Journal rows (as read back from the database) as records following (prev_seq,
    prev_hash), each linked to the one before."""
    records = []
    for row in rows:
        fields = {"seq": prev_seq + 1, **{c: row[c] for c in RECORD_COLUMNS}, "prev_hash": prev_hash}
        record = AuditRecord(**fields, hash=record_hash(fields))
        records.append(record)
        prev_seq, prev_hash = record.seq, record.hash
    return records


def _checkpoint_message(seq: int, head_hash: str, at: datetime) -> bytes:
    return f"conveyor-audit-checkpoint:{seq}:{head_hash}:{timestamp_text(at)}".encode()


def sign_checkpoint(seq: int, head_hash: str, at: datetime, key: str | None) -> Checkpoint:
    signature = None
    if key:
        signature = hmac.new(key.encode(), _checkpoint_message(seq, head_hash, at), hashlib.sha256).hexdigest()
    return Checkpoint(seq=seq, hash=head_hash, created_at=at, signature=signature)


def checkpoint_signed_by(checkpoint: Checkpoint, key: str) -> bool:
    expected = sign_checkpoint(checkpoint.seq, checkpoint.hash, checkpoint.created_at, key).signature
    return checkpoint.signature is not None and hmac.compare_digest(checkpoint.signature, expected or "")


@dataclass(frozen=True, slots=True)
class SignatureRow:
    """A row of conveyor_signatures: an e-signature, bound to the content hash of its record."""

    id: str
    record_hash: str
    action: str
    object_type: str
    object_id: str | None
    org_id: str | None
    signer_id: str
    signer_name: str
    meaning: str
    signed_at: datetime
    signed_by_caller: str  # who made the request (a user, or an API key a user signed for)

    def manifest(self) -> dict[str, str]:
        return SignatureMark(self.id, self.signer_id, self.signer_name, self.meaning, self.signed_at).manifest()

    def as_json(self) -> dict[str, Any]:
        return {
            **self.manifest(),
            "action": self.action,
            "objectType": self.object_type,
            "objectId": self.object_id,
            "recordHash": self.record_hash,
            "requestedBy": self.signed_by_caller,
        }


@dataclass(slots=True)
class Verdict:
    ok: bool = True
    records: int = 0  # how many were checked
    head_seq: int = 0
    head_hash: str = GENESIS
    checkpoints: int = 0
    signed: bool = False  # whether checkpoints were checked against an audit key
    broken_seq: int | None = None  # the first record (or checkpoint) found wrong
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)
    signatures: int = 0  # e-signatures checked against the records they sign

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "headSeq": self.head_seq,
            "headHash": self.head_hash,
            "checkpoints": self.checkpoints,
            "checkpointsSigned": self.signed,
            "brokenSeq": self.broken_seq,
            "problem": self.problem,
            "warnings": self.warnings,
            "signatures": self.signatures,
        }


class ChainVerifier:
    """Fed the records in seq order (a page at a time) and every checkpoint; keeps only the
    previous record and the checkpoints, so memory stays flat however long the chain."""

    def __init__(self, checkpoints: list[Checkpoint], *, key: str | None) -> None:
        self._checkpoints = {c.seq: c for c in checkpoints}
        self._key = key
        # Signed records seen: signature id -> (seq, the record's content hash, manifest, record).
        self.signed: dict[str, tuple[int, str, dict[str, Any], AuditRecord]] = {}
        self.verdict = Verdict(checkpoints=len(checkpoints), signed=bool(key))
        if not key:
            self.verdict.warnings.append(
                "CONVEYOR_AUDIT_KEY is not set: checkpoints are unsigned, so a chain rewritten "
                "from its start together with its checkpoints would not be detected"
            )
        for c in checkpoints:
            if key and not checkpoint_signed_by(c, key):
                self._fail(c.seq, f"checkpoint at seq {c.seq} is not signed by the audit key")
                break

    def _fail(self, seq: int, problem: str) -> None:
        if self.verdict.ok:
            self.verdict.ok, self.verdict.broken_seq, self.verdict.problem = False, seq, problem

    def feed(self, records: list[AuditRecord]) -> bool:
        """Check the next records; False once something is wrong (stop feeding)."""
        v = self.verdict
        for r in records:
            if not v.ok:
                return False
            expected_seq = v.head_seq + 1
            if r.seq != expected_seq:
                kind = "missing (deleted)" if r.seq > expected_seq else "out of order"
                self._fail(expected_seq, f"sequence break: expected seq {expected_seq}, found {r.seq}; records {kind}")
            elif r.prev_hash != v.head_hash:
                link = f"seq {r.seq}: prev_hash does not link to seq {v.head_seq}"
                self._fail(r.seq, f"{link} (inserted, deleted or reordered records)")
            elif record_hash(r.fields()) != r.hash:
                self._fail(r.seq, f"seq {r.seq}: hash mismatch (a field was altered)")
            elif (c := self._checkpoints.get(r.seq)) is not None and c.hash != r.hash:
                self._fail(r.seq, f"seq {r.seq}: differs from the checkpoint taken at {timestamp_text(c.created_at)}")
            if not v.ok:
                return False
            if (manifest := signature_manifest(r.after)) is not None:
                self.signed[str(manifest.get("id"))] = (r.seq, content_hash(r.fields()), manifest, r)
            v.records += 1
            v.head_seq, v.head_hash = r.seq, r.hash
        return True

    def check_signatures(self, rows: list[SignatureRow]) -> None:
        """Each signature row against the record it signs: the row must name that record's
        content hash and say what the record's manifest says; every signed record must have
        its row. (Run after the whole chain was fed.)"""
        v = self.verdict
        seen: set[str] = set()
        for row in rows:
            if not v.ok:
                return
            seen.add(row.id)
            found = self.signed.get(row.id)
            if found is None:
                self._fail(0, f"signature {row.id} signs no record in the chain (moved or forged)")
                return
            seq, record_content, manifest, record = found
            if row.record_hash != record_content:
                self._fail(seq, f"signature {row.id} is not bound to record seq {seq}: record hash differs (moved)")
            elif row.manifest() != manifest or (row.action, row.object_type, row.object_id) != (
                record.action, record.object_type, record.object_id,
            ):  # fmt: skip
                self._fail(seq, f"signature {row.id} differs from the manifest in record seq {seq} (altered)")
            else:
                v.signatures += 1
        for sig_id, (seq, *_rest) in self.signed.items():
            if v.ok and sig_id not in seen:
                self._fail(seq, f"record seq {seq} carries signature {sig_id}, whose row is missing (deleted)")

    def finish(self) -> Verdict:
        v = self.verdict
        newest = max(self._checkpoints, default=0)
        if v.ok and newest > v.head_seq:
            ends = f"the chain ends at seq {v.head_seq}"
            self._fail(v.head_seq + 1, f"cut-off tail: {ends}, a checkpoint names seq {newest}")
        return v
