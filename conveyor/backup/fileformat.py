"""The backup file: a database snapshot encrypted in chunks with AES-256-GCM, and its manifest.

Layout::

    MAGIC (16 bytes) | header length (u32, big-endian) | header (JSON)
    record* : ciphertext length (u32) | ciphertext (plaintext + 16-byte tag)

Every record but the last is a chunk of the dump; the last is the manifest (JSON). A record's
nonce is the header's 7-byte prefix, the record's number (u32) and a final flag (1 on the
manifest's record, 0 on the others); its associated data is the magic and the header. So the
header cannot be altered, records cannot be reordered, dropped or moved to another backup, and
a file cut short does not open: its last record was not sealed as the last. The header names
the key (its id, never the key); any configured key opens what it sealed, as with sealed job
fields (conveyor.crypto), so a key rotation leaves older backups restorable while the old key
is configured.

The dump is read and written a chunk at a time: neither side holds it in memory.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from conveyor.backup.errors import BackupUnreadable

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from conveyor.crypto import Keyring

MAGIC = b"CONVEYOR-BACKUP\n"
FORMAT = 1
CHUNK_BYTES = 1024 * 1024
PREFIX_BYTES = 7
TAG_BYTES = 16
MAX_HEADER_BYTES = 64 * 1024
MAX_CHUNK_BYTES = 64 * 1024 * 1024  # what a reader accepts (a damaged header must not ask for GBs)
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class Written:
    """What encrypting a dump produced: the file's size and SHA-256, the dump's size and SHA-256."""

    file_bytes: int
    file_sha256: str
    dump_bytes: int
    dump_sha256: str


def _nonce(prefix: bytes, counter: int, final: bool) -> bytes:
    return prefix + struct.pack(">IB", counter, 1 if final else 0)


def encrypt(
    dump: Path,
    out: Path,
    keyring: Keyring,
    header: dict[str, Any],
    manifest_of: Callable[[int, str], dict[str, Any]],
    *,
    chunk_bytes: int = CHUNK_BYTES,
) -> Written:
    """Encrypt `dump` into `out` with the keyring's current key; `manifest_of(dump_bytes,
    dump_sha256)` gives the manifest sealed as the last record."""
    kid, cipher = keyring.cipher()
    prefix = os.urandom(PREFIX_BYTES)
    head = json.dumps(
        {**header, "format": FORMAT, "kid": kid, "nonce_prefix": base64.b64encode(prefix).decode(),
         "chunk_bytes": chunk_bytes, "cipher": "AES-256-GCM"},
        separators=(",", ":"), sort_keys=True,
    ).encode()  # fmt: skip
    aad = MAGIC + head
    file_hash, dump_hash = hashlib.sha256(), hashlib.sha256()
    file_bytes = dump_bytes = 0
    counter = 0

    def put(f: IO[bytes], data: bytes) -> None:
        nonlocal file_bytes
        f.write(data)
        file_hash.update(data)
        file_bytes += len(data)

    # Readable by the owner only (the dump inside is encrypted, but its size and timing are not).
    with dump.open("rb") as src, os.fdopen(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        put(f, MAGIC + _LENGTH.pack(len(head)) + head)
        while chunk := src.read(chunk_bytes):
            dump_hash.update(chunk)
            dump_bytes += len(chunk)
            sealed = cipher.encrypt(_nonce(prefix, counter, False), chunk, aad)
            put(f, _LENGTH.pack(len(sealed)) + sealed)
            counter += 1
        manifest = json.dumps(manifest_of(dump_bytes, dump_hash.hexdigest()), sort_keys=True).encode()
        sealed = cipher.encrypt(_nonce(prefix, counter, True), manifest, aad)
        put(f, _LENGTH.pack(len(sealed)) + sealed)
        f.flush()
        os.fsync(f.fileno())
    return Written(file_bytes, file_hash.hexdigest(), dump_bytes, dump_hash.hexdigest())


def read_header(f: IO[bytes]) -> tuple[dict[str, Any], bytes]:
    """The header of an open backup file (positioned at its start), and the associated data."""
    if f.read(len(MAGIC)) != MAGIC:
        raise BackupUnreadable("not a conveyor backup file")
    (length,) = _LENGTH.unpack(_exactly(f, _LENGTH.size))
    if length > MAX_HEADER_BYTES:
        raise BackupUnreadable("the backup file's header is damaged")
    raw = _exactly(f, length)
    try:
        header = json.loads(raw)
    except ValueError:
        raise BackupUnreadable("the backup file's header is damaged") from None
    if header.get("format") != FORMAT:
        raise BackupUnreadable(f"backup format {header.get('format')!r} is not one this version reads ({FORMAT})")
    if not isinstance(header.get("chunk_bytes"), int) or not 0 < header["chunk_bytes"] <= MAX_CHUNK_BYTES:
        raise BackupUnreadable("the backup file's header is damaged")
    return header, MAGIC + raw


def decrypt(backup: Path, dump: Path, keyring: Keyring) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decrypt `backup` into `dump` (a new file); its header and manifest. Checks every record's
    tag and the dump's SHA-256 against the manifest; BackupUnreadable names what failed."""
    from cryptography.exceptions import InvalidTag  # loaded with the keyring's cipher anyway

    dump_hash = hashlib.sha256()
    dump_bytes = 0
    with backup.open("rb") as f, dump.open("xb") as out:
        header, aad = read_header(f)
        cipher = _cipher(keyring, str(header.get("kid")))
        prefix = base64.b64decode(header["nonce_prefix"])
        manifest_raw = None
        for counter, (sealed, last) in enumerate(_records(f, int(header["chunk_bytes"]))):
            try:
                plain = cipher.decrypt(_nonce(prefix, counter, last), sealed, aad)
            except InvalidTag:  # altered, reordered, cut short, or another backup's
                raise BackupUnreadable(
                    f"record {counter} of the backup does not open: the file was altered or cut short"
                ) from None
            if last:
                manifest_raw = plain
            else:
                dump_hash.update(plain)
                dump_bytes += len(plain)
                out.write(plain)
        if manifest_raw is None:
            raise BackupUnreadable("the backup file holds no manifest: it was cut short")
        out.flush()
        os.fsync(out.fileno())
    manifest = json.loads(manifest_raw)
    if dump_bytes != manifest["dump_bytes"] or dump_hash.hexdigest() != manifest["dump_sha256"]:
        raise BackupUnreadable("the decrypted dump does not match the manifest's SHA-256")
    return header, manifest


def read_manifest(backup: Path, keyring: Keyring) -> dict[str, Any]:
    """The manifest sealed in `backup`, authenticated (the dump's records are skipped unread)."""
    from cryptography.exceptions import InvalidTag

    with backup.open("rb") as f:
        header, aad = read_header(f)
        cipher = _cipher(keyring, str(header.get("kid")))
        prefix = base64.b64decode(header["nonce_prefix"])
        counter = 0
        while True:
            (length,) = _LENGTH.unpack(_exactly(f, _LENGTH.size))
            here = f.tell()
            if f.seek(0, os.SEEK_END) == here + length:
                f.seek(here)
                sealed = _exactly(f, length)
                try:
                    plain = cipher.decrypt(_nonce(prefix, counter, True), sealed, aad)
                except InvalidTag:
                    raise BackupUnreadable("the backup's manifest does not open: altered or cut short") from None
                return json.loads(plain)  # type: ignore[no-any-return]
            f.seek(here + length)
            counter += 1


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _cipher(keyring: Keyring, kid: str) -> AESGCM:
    try:
        return keyring.cipher(kid)[1]
    except KeyError:
        raise BackupUnreadable(f"the backup was encrypted with key {kid!r}, which is not configured") from None


def _records(f: IO[bytes], chunk_bytes: int) -> Iterator[tuple[bytes, bool]]:
    """(ciphertext, is the last record) of each record after the header."""
    limit = max(chunk_bytes, MAX_HEADER_BYTES * 16) + TAG_BYTES
    pending: bytes | None = None
    while True:
        raw = f.read(_LENGTH.size)
        if not raw:
            break
        if len(raw) < _LENGTH.size:
            raise BackupUnreadable("the backup file was cut short")
        (length,) = _LENGTH.unpack(raw)
        if length > limit:
            raise BackupUnreadable("the backup file is damaged (a record longer than its chunks)")
        if pending is not None:
            yield pending, False
        pending = _exactly(f, length)
    if pending is None:
        raise BackupUnreadable("the backup file holds no records: it was cut short")
    yield pending, True


def _exactly(f: IO[bytes], n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise BackupUnreadable("the backup file was cut short")
    return data
