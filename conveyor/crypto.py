"""Encryption at rest for sensitive job types (AES-256-GCM, HIPAA's "addressable" safeguard
and seed 001's requirement): their data, results and log messages are stored sealed.

A sealed JSON value is `{"$sealed": 1, "kid": <key id>, "ct": <base64 nonce || ciphertext>}`;
a sealed text is `sealed:1:<key id>:<base64 nonce || ciphertext>`. Each is bound to where it
belongs (the job's id and the field) as associated data, so a ciphertext copied onto another
job or into another field does not open. Keys come from configuration (never the database);
new values are sealed with the current key, and any configured key opens what it sealed, so
keys rotate without downtime: add a key, make it current, `conveyor keys rotate`, then drop
the old one.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
TEXT_PREFIX = "sealed:1:"


class SealError(ConveyorError):
    """A sealed value that cannot be opened: its key is not configured, or it was altered."""

    code = "SEALED_VALUE_UNREADABLE"


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and value.get("$sealed") == 1


def is_sealed_text(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(TEXT_PREFIX)


def parse_keys(text_keys: Mapping[str, str]) -> dict[str, bytes]:
    """Key id -> 32-byte key, from base64 text (as settings hold them)."""
    keys = {}
    for kid, text in text_keys.items():
        if not kid or ":" in kid:
            raise ValueError(f"encryption key id {kid!r}: must be non-empty, without ':'")
        try:
            key = base64.b64decode(text, validate=True)
        except binascii.Error:
            raise ValueError(f"encryption key {kid!r} is not base64") from None
        if len(key) != 32:
            raise ValueError(f"encryption key {kid!r} must be 32 bytes (AES-256), not {len(key)}")
        keys[kid] = key
    return keys


class Keyring:
    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError(f"the current encryption key {current!r} is not among the keys ({', '.join(keys)})")
        # cryptography (~9 MB in every process) is imported once a key is configured.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._ciphers: dict[str, AESGCM] = {kid: AESGCM(key) for kid, key in keys.items()}
        self.current = current

    @classmethod
    def from_settings(cls, keys: Mapping[str, str], current: str | None) -> Keyring | None:
        """None when no key is configured (sensitive job types are then refused)."""
        if not keys:
            return None
        if current is None:
            if len(keys) > 1:
                raise ValueError("several encryption keys: name the current one (CONVEYOR_ENCRYPTION_KEY_ID)")
            [current] = keys
        return cls(parse_keys(keys), current)

    @staticmethod
    def new_key() -> str:
        """A fresh key, as settings hold it."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()

    def cipher(self, kid: str | None = None) -> tuple[str, AESGCM]:
        """The AES-GCM cipher of key `kid` (default: the current key), with its id, for
        callers that seal in their own framing (backup files); KeyError when not configured."""
        kid = self.current if kid is None else kid
        return kid, self._ciphers[kid]

    def _seal(self, plain: bytes, aad: str) -> tuple[str, str]:
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + self._ciphers[self.current].encrypt(nonce, plain, aad.encode())
        return self.current, base64.b64encode(sealed).decode()

    def _open(self, kid: str, text: str, aad: str) -> bytes:
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise SealError(f"sealed with key {kid!r}, which is not configured")
        try:
            raw = base64.b64decode(text)
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad.encode())
        except Exception as exc:  # InvalidTag, bad base64: altered, or bound elsewhere
            raise SealError("a sealed value does not open: altered, or moved from another job or field") from exc

    def seal_json(self, value: Any, aad: str) -> dict[str, Any]:
        kid, ct = self._seal(json.dumps(value, separators=(",", ":")).encode(), aad)
        return {"$sealed": 1, "kid": kid, "ct": ct}

    def open_json(self, value: Any, aad: str) -> Any:
        """`value` opened if sealed; anything else as it is."""
        if not is_sealed(value):
            return value
        return json.loads(self._open(value["kid"], value["ct"], aad))

    def seal_text(self, text: str, aad: str) -> str:
        kid, ct = self._seal(text.encode(), aad)
        return f"{TEXT_PREFIX}{kid}:{ct}"

    def open_text(self, text: str, aad: str) -> str:
        if not is_sealed_text(text):
            return text
        kid, _, ct = text[len(TEXT_PREFIX) :].partition(":")
        return self._open(kid, ct, aad).decode()

    def kid_of(self, value: Any) -> str | None:
        """The key a sealed value or text was sealed with (None: not sealed)."""
        if is_sealed(value):
            return str(value["kid"])
        if is_sealed_text(value):
            return value[len(TEXT_PREFIX) :].partition(":")[0]
        return None


def aad(job_id: object, field: str) -> str:
    """What a job's sealed field is bound to."""
    return f"conveyor:{job_id}:{field}"
