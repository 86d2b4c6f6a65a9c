"""In-process fan-out of the store's notifications to whoever waits on them.

Topics: "insert" (payload: a queue with new pending jobs), "cancel" (a job id whose
cancellation was asked while it runs), "finish" (a job id that reached a final status). The
payload "*" means "anything may have changed" (a commit by another process on SQLite, a
reconnected listener on PostgreSQL): waiters re-check.
Callbacks run on the event loop and must not block. One that raises is logged and the
others still run: publishing happens in the listener's receive loop and after commits,
where a subscriber's bug must not cut the connection or fail a call that was stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable

Callback = Callable[[str], None]
log = logging.getLogger("conveyor.notifier")


class Notifier:
    def __init__(self) -> None:
        self._subscribers: dict[str, list[Callback]] = defaultdict(list)

    def subscribe(self, topic: str, callback: Callback) -> Callable[[], None]:
        self._subscribers[topic].append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers[topic]:
                self._subscribers[topic].remove(callback)

        return unsubscribe

    def publish(self, topic: str, payload: str) -> None:
        for callback in list(self._subscribers.get(topic, ())):
            try:
                callback(payload)
            except Exception:
                log.exception("a subscriber to %r failed on %r", topic, payload)

    def future_for(self, topic: str, payload: str) -> tuple[asyncio.Future[None], Callable[[], None]]:
        """A future that resolves when `payload` is published on `topic`, and its unsubscribe."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_publish(got: str) -> None:
            # "*": something changed that the publisher cannot name (another process's commit)
            if got in (payload, "*") and not future.done():
                future.set_result(None)

        return future, self.subscribe(topic, on_publish)
