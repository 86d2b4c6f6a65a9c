"""The in-process fan-out of the store's notifications."""

from __future__ import annotations

import pytest

from conveyor.notifier import Notifier


def test_a_failing_subscriber_is_logged_and_the_others_still_hear(caplog: pytest.LogCaptureFixture) -> None:
    # publish runs in the listener's receive loop and after commits: raising there would cut
    # the LISTEN connection or fail a call whose jobs were stored.
    notifier = Notifier()
    heard: list[str] = []

    def broken(payload: str) -> None:
        raise ValueError(f"cannot read {payload}")

    notifier.subscribe("cancel", broken)
    notifier.subscribe("cancel", heard.append)
    notifier.publish("cancel", "*")
    assert heard == ["*"]
    assert [r.getMessage() for r in caplog.records] == ["a subscriber to 'cancel' failed on '*'"]
    assert caplog.records[0].exc_info is not None
