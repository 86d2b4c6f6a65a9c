"""File uploads: a multipart/form-data body streamed straight to a file, under a size limit.

The body is never held in memory nor spooled to a temporary file first: python-multipart's
streaming parser hands each piece of the file part to the target file as it arrives, and a
file over the limit is refused the moment it passes it. Other form fields are kept as text,
up to a small size each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

MAX_FIELD_BYTES = 1024
MAX_FILENAME_CHARS = 255
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


class UploadRefused(Exception):
    """The upload is not acceptable: `status` and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Received:
    """What a multipart body carried: the file's name and size, and the other fields."""

    filename: str | None = None
    size: int = 0
    has_file: bool = False
    fields: dict[str, str] = field(default_factory=dict)


def clean_filename(raw: str | None) -> str | None:
    """The name the caller's machine gave the file, without its folders (some browsers send
    C:\\fakepath\\…) or control characters."""
    if not raw:
        return None
    name = _UNPRINTABLE.sub("", re.split(r"[\\/]", raw)[-1]).strip()
    return name[:MAX_FILENAME_CHARS] or None


class _Receiver:
    def __init__(self, file_field: str, target: Path, max_bytes: int) -> None:
        self.file_field = file_field
        self.target = target
        self.max_bytes = max_bytes
        self.received = Received()
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._file: IO[bytes] | None = None
        self._field: str | None = None
        self._value = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_piece,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_piece(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", errors="replace")
        if name == self.file_field and not self.received.has_file:
            self.received.has_file = True
            self.received.filename = clean_filename(params.get(b"filename", b"").decode("utf-8", errors="replace"))
            self._file = self.target.open("wb")
            self._field = None
        else:
            self._file = None
            self._field = name
            self._value = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self.received.size += end - start
            if self.received.size > self.max_bytes:
                raise UploadRefused(413, f"File too large: the limit is {self.max_bytes / 1024 / 1024:g} MB")
            self._file.write(data[start:end])
        elif self._field is not None:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                raise UploadRefused(400, f"Form field {self._field!r} is too long")

    def _part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._field is not None:
            self.received.fields.setdefault(self._field, self._value.decode("utf-8", errors="replace"))
            self._field = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def receive_file(request: Request, *, file_field: str, target: Path, max_bytes: int) -> Received:
    """Stream the multipart body's part named `file_field` to `target`; UploadRefused when the
    body is not multipart, or the file passes `max_bytes`."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise UploadRefused(400, f"Send the file as multipart/form-data, in the field '{file_field}'")
    receiver = _Receiver(file_field, target, max_bytes)
    parser = MultipartParser(boundary, receiver.callbacks())
    try:
        async for piece in request.stream():
            parser.write(piece)
        parser.finalize()
    except UploadRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - python-multipart's own errors: a malformed body
        raise UploadRefused(400, f"The multipart body could not be read: {exc}") from None
    finally:
        receiver.close()
    return receiver.received
