"""A minimal HTTP/1.1 keep-alive load generator on asyncio streams, for bench.api.

It runs in a process of its own (bench.api spawns one running `serve`), so the load
it makes does not share an interpreter, nor a GIL, with the server it measures. Python's HTTP
libraries spend far more per request than the server under test does; this client sends
pre-encoded request bytes, reads the status line and headers in one `readuntil`, then the body by
its Content-Length (chunked bodies are read too), and times every request with perf_counter.

A phase: `connections` keep-alive connections, each sending its next request as soon as the
previous answer is in. First a warm-up (`warmup_s` seconds and at least `warmup_count` requests,
answers discarded), then the measured part: `duration_s` seconds, or `count` requests, whichever
ends first when both are given. A request counts when it was sent inside the measured part.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

READ_TIMEOUT_S = 30.0
JOB_ID = re.compile(rb'"jobId":"([0-9a-f-]{36})"')
MAX_ERROR_SAMPLES = 5


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    host: str
    port: int
    requests: tuple[bytes, ...]  # sent in turn, shared by every connection
    connections: int
    duration_s: float | None = None
    count: int | None = None
    warmup_s: float = 0.0
    warmup_count: int = 0
    capture_ids: int = 0  # keep the `jobId`s of this many answers (job creation)


@dataclass(slots=True)
class PhaseResult:
    name: str
    latencies_ms: list[float] = field(default_factory=list)  # measured requests, in completion order
    elapsed_s: float = 0.0  # first measured send to last measured answer
    statuses: dict[int, int] = field(default_factory=dict)  # of measured requests
    errors: list[str] = field(default_factory=list)  # transport errors and samples of non-2xx answers
    ids: list[str] = field(default_factory=list)
    cpu_s: float = 0.0  # this process's CPU time over the phase

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @property
    def rps(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0


class ProtocolError(Exception):
    pass


def request_bytes(
    method: str, path: str, host: str, port: int, *, token: str | None = None, body: bytes | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (body or b"")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x answer: {head[:40]!r}")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at + 2)
        length = int(lower[at + 17 : end])
        return status, await reader.readexactly(length) if length else b""
    if b"\r\ntransfer-encoding: chunked" in lower:
        return status, await _read_chunked(reader)
    if status in (204, 304) or 100 <= status < 200:
        return status, b""
    raise ProtocolError("an answer with neither Content-Length nor chunked encoding")


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers are expected: the empty line
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def fetch(host: str, port: int, request: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """One request on a connection of its own (the parent's readiness and sanity checks)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            return await read_response(reader)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class _Run:
    """Hands out requests to the connections and decides which are measured."""

    def __init__(self, phase: Phase) -> None:
        self.phase = phase
        self.result = PhaseResult(phase.name)
        self.statuses: Counter[int] = Counter()
        self.next = 0
        self.warm_sent = 0
        self.sent = 0
        self.started = time.perf_counter()
        self.measure_from: float | None = None
        self.last_answer = 0.0

    def take(self) -> tuple[bytes, bool] | None:
        """The next request and whether it is measured; None when the phase is over."""
        phase, now = self.phase, time.perf_counter()
        if self.measure_from is None:
            if self.warm_sent < phase.warmup_count or now - self.started < phase.warmup_s:
                self.warm_sent += 1
                return self._request(), False
            self.measure_from = now
        if phase.count is not None and self.sent >= phase.count:
            return None
        if phase.duration_s is not None and now - self.measure_from >= phase.duration_s:
            return None
        self.sent += 1
        return self._request(), True

    def _request(self) -> bytes:
        requests = self.phase.requests
        request = requests[self.next % len(requests)]
        self.next += 1
        return request

    def answered(self, status: int, body: bytes, latency_s: float, measured: bool) -> None:
        result = self.result
        if measured:
            result.latencies_ms.append(latency_s * 1000)
            self.statuses[status] += 1
            self.last_answer = time.perf_counter()
        if not 200 <= status < 300:
            if len(result.errors) < MAX_ERROR_SAMPLES:
                result.errors.append(f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}")
        elif len(result.ids) < self.phase.capture_ids:
            match = JOB_ID.search(body)
            if match:
                result.ids.append(match.group(1).decode("ascii"))


async def _connection(run: _Run) -> None:
    phase = run.phase
    try:
        reader, writer = await asyncio.open_connection(phase.host, phase.port)
    except OSError as exc:
        run.result.errors.append(f"connect: {exc}")
        return
    perf_counter = time.perf_counter
    try:
        while (ticket := run.take()) is not None:
            request, measured = ticket
            started = perf_counter()
            writer.write(request)
            async with asyncio.timeout(READ_TIMEOUT_S):
                status, body = await read_response(reader)
            run.answered(status, body, perf_counter() - started, measured)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ProtocolError) as exc:
        run.result.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _run_phase(phase: Phase) -> PhaseResult:
    run = _Run(phase)
    cpu = time.process_time()
    await asyncio.gather(*(_connection(run) for _ in range(phase.connections)))
    result = run.result
    result.cpu_s = time.process_time() - cpu
    result.statuses = dict(run.statuses)
    if run.measure_from is not None and run.last_answer:
        result.elapsed_s = run.last_answer - run.measure_from
    return result


def _loop_factory() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def event_loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run_phase(phase: Phase) -> PhaseResult:
    """The entry point the parent calls in the load process (uvloop when installed)."""
    with asyncio.Runner(loop_factory=_loop_factory) as runner:
        return runner.run(_run_phase(phase))


def serve(conn: Connection) -> None:
    """The load process's main: run each Phase received on `conn` and send back its result (or
    the exception it raised), until None arrives. The parent ends this process on Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while (phase := conn.recv()) is not None:
        try:
            outcome: PhaseResult | str | Exception = run_phase(phase) if isinstance(phase, Phase) else event_loop_name()
        except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
            outcome = exc
        conn.send(outcome)
