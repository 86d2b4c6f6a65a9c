"""Changes: the store's notifications, coalesced to at most one round a second and narrowed to
each follower's jobs, for live views (the dashboard's pages through GET /api/v1/events).

One process-wide round, not one per follower: the notifier's "insert" (a queue got pending
jobs), "finish" (jobs reached a final status) and "cancel" (a running job was asked to stop)
are gathered, and once a second, if any came, one statement (Store.changed_owners) finds whose
jobs they were: the jobs named by id, and those created in the last seconds in the queues
named. Each follower is then told which topics changed among the jobs it may see, and nothing
else: no job, no id, no queue name. A follower refreshes its view through the ordinary reads,
which apply its scope again.

Where the owners cannot be told, every follower is told: a "*" (another process's commit on
SQLite, a reconnected listener), an insert of jobs created earlier (a scheduled job coming due,
a retry), or a burst of more than MAX_IDS jobs. Such a follower refreshes once for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta

from conveyor.model import Owner, Visibility, utc_now
from conveyor.notifier import Notifier
from conveyor.store.base import Store

log = logging.getLogger("conveyor.changes")
TOPICS = ("insert", "finish", "cancel")
MAX_IDS = 5000  # jobs resolved in one round; beyond, every follower is told
# How far back an insert's new jobs are looked for: a round's interval plus the time a
# notification may take to arrive (the clock of the process that stored them may lag).
RECENT = timedelta(seconds=10)


@dataclass(eq=False)
class _Follower:
    visible_to: Visibility | None
    topics: set[str] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Round:
    topics: set[str] = field(default_factory=set)
    job_ids: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)
    everyone: bool = False


class Changes:
    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        listen: Callable[[Collection[str]], Awaitable[None]],
        *,
        interval: float = 1.0,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._listen = listen
        self._interval = interval
        self._followers: set[_Follower] = set()
        self._round = _Round()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []

    async def follow(self, visible_to: Visibility | None) -> AsyncGenerator[frozenset[str], None]:
        """The topics that changed among the jobs `visible_to` allows (None: every job), each
        time some did, at most once per interval; until the caller stops iterating."""
        await self._listen(TOPICS)
        follower = _Follower(visible_to)
        self._followers.add(follower)
        self._start()
        try:
            while True:
                await follower.ready.wait()
                follower.ready.clear()
                topics, follower.topics = frozenset(follower.topics), set()
                yield topics
        finally:
            self._followers.discard(follower)
            if not self._followers:
                await self._stop()

    def _start(self) -> None:
        if self._task is not None:
            return
        for topic in TOPICS:
            self._unsubscribe.append(self._notifier.subscribe(topic, self._collector(topic)))
        self._task = asyncio.create_task(self._run(), name="conveyor-changes")

    async def _stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._round = _Round()

    def _collector(self, topic: str) -> Callable[[str], None]:
        def collect(payload: str) -> None:
            gathered = self._round
            gathered.topics.add(topic)
            if payload == "*":
                gathered.everyone = True
            elif topic == "insert":
                gathered.queues.add(payload)
            else:
                gathered.job_ids.add(payload)
            self._wake.set()

        return collect

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            gathered, self._round = self._round, _Round()
            try:
                owners = await self._owners(gathered)
            except Exception:  # a failed look must not end every follower's feed
                log.warning("could not tell whose jobs changed; telling every follower", exc_info=True)
                owners = None
            for follower in self._followers:
                if owners is None or follower.visible_to is None or any(map(follower.visible_to.allows, owners)):
                    follower.topics |= gathered.topics
                    follower.ready.set()
            await asyncio.sleep(self._interval)  # what arrives meanwhile waits for the next round

    async def _owners(self, gathered: _Round) -> set[Owner] | None:
        """Whose jobs changed; None: cannot be told (every follower is told)."""
        if gathered.everyone or len(gathered.job_ids) > MAX_IDS:
            return None
        owners, queues_found = await self._store.changed_owners(
            sorted(gathered.job_ids), sorted(gathered.queues), utc_now() - RECENT
        )
        if set(gathered.queues) - queues_found:
            return None  # pending jobs not created just now (due, retried, released): whose?
        return owners
