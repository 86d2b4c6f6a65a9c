"""`Signature`: an e-signature the client sends with a critical operation.

The server decides which operations are critical (`CONVEYOR_CRITICAL_OPERATIONS`; its rules
are readable with `client.signature_policy()`); without a signature it refuses them with
`SignatureRequired` (428), and a wrong one with `SignatureInvalid` (403). The signature
travels in three headers of that one request, the password re-entered for every signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Signature:
    """Who signs (`user_id`: a local user; for an API key, one of its organisation whose role
    may do the operation), their password, and what the signature means (`approved`,
    `responsible`, `reviewed`, `authored`, or the server's CONVEYOR_SIGNATURE_MEANINGS).

    The password never shows in a repr, a log line or an error.

    Example::

        from conveyor.client import Client, Signature

        with Client(url, api_key=key) as client:
            client.clear_cache(signature=Signature("ada", password, "approved"))
    """

    user_id: str
    password: str = field(repr=False)
    meaning: str

    def headers(self) -> tuple[tuple[str, bytes], ...]:
        # UTF-8 bytes: httpx would encode text as ASCII, and the server reads the headers as UTF-8.
        return (
            ("X-Signature-User", self.user_id.encode()),
            ("X-Signature-Password", self.password.encode()),
            ("X-Signature-Meaning", self.meaning.encode()),
        )


def signature_headers(signature: Signature | None) -> tuple[tuple[str, bytes], ...]:
    return () if signature is None else signature.headers()
