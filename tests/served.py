"""A real `conveyor serve` process for tests that talk to it over TCP (the client's and the
command's end-to-end tests): on a database of its own, with a super admin key made beforehand
by `conveyor apikey create` on that database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from conftest import make_settings

# What a developer's shell may set that would point the processes elsewhere.
CLIENT_ENV = ("CONVEYOR_URL", "CONVEYOR_API_KEY", "CONVEYOR_TOKEN", "CONVEYOR_CONFIG")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Served:
    url: str
    super_key: str
    database_url: str
    log: Path

    def key(self, role: str = "admin", org: str | None = None) -> str:
        """A fresh key of `role` in `org` (a new organisation of its own when None), so a test
        sees only the jobs it made."""
        body = {"name": f"{role} for a test", "role": role, "orgId": org or f"org-{uuid.uuid4().hex[:12]}"}
        headers = {"Authorization": f"Bearer {self.super_key}"}
        answer = httpx.post(f"{self.url}/api/v1/api-keys", json=body, headers=headers, timeout=30)
        answer.raise_for_status()
        return str(answer.json()["data"]["key"])


def base_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    return {**env, "CONVEYOR_DATABASE_URL": database_url}


@contextlib.contextmanager
def conveyor_serve(
    database_url: str, directory: Path, *, role: str = "super_admin", signatures: bool = False
) -> Iterator[Served]:
    """`conveyor serve` (API and a worker) on `database_url`, listening on a free port. Critical
    operations need an e-signature only with `signatures` (then by the server's defaults, with
    cheap password hashing and a JWT secret for sign-in); the other tests' servers demand none."""
    port = free_port()
    env = {**base_env(database_url), "API_PORT": str(port)}
    if signatures:
        env.pop("CONVEYOR_CRITICAL_OPERATIONS", None)
        env.update(
            CONVEYOR_JWT_SECRET="a test secret of the signed server, 32+ bytes",
            CONVEYOR_PASSWORD_HASH_TIME_COST="1",
            CONVEYOR_PASSWORD_HASH_MEMORY_KIB="8192",
            CONVEYOR_PASSWORD_HASH_PARALLELISM="1",
        )
    else:
        env["CONVEYOR_CRITICAL_OPERATIONS"] = "none"
    key = asyncio.run(_new_key(database_url, role))
    log_path = directory / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _until_healthy(url, server, log_path)
            yield Served(url, key, database_url, log_path)
        finally:
            server.terminate()
            server.wait(timeout=30)


async def _new_key(database_url: str, role: str) -> str:
    from conveyor import Conveyor
    from conveyor.apikeys import ApiKeys

    async with Conveyor.from_settings(make_settings(database_url)) as conveyor:
        made = await ApiKeys(conveyor.store, audit=conveyor.audit).create(role=role, name="tests", created_by="tests")
    return made.key


def _until_healthy(url: str, server: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/api/v1/jobs/health", timeout=5).status_code in (200, 503):
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"conveyor serve did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
