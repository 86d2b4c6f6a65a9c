"""Pure parts: priorities, retry schedules, progress arithmetic, settings."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from conveyor import Priority, Settings
from conveyor.model import Progress, priority_level
from conveyor.retry import DEFAULT_POLICIES, RetryPolicy, policy_for


@pytest.mark.parametrize(
    ("level", "expected"),
    [(10, "critical"), (9, "critical"), (8, "high"), (7, "high"), (6, "medium"), (4, "medium"), (3, "low"), (1, "low")],
)
def test_integer_priorities_map_onto_classes(level: int, expected: str) -> None:
    assert Priority.of(level) is Priority(expected)


def test_named_priorities_rank_in_order_and_reject_unknown_values() -> None:
    ranks = [priority_level(p) for p in ("critical", "high", "medium", "low")]
    assert ranks == sorted(ranks, reverse=True)
    with pytest.raises(ValueError, match="urgent"):
        priority_level("urgent")
    with pytest.raises(ValueError):
        priority_level(11)
    with pytest.raises(ValueError):
        priority_level(True)


def test_class_retry_table_is_seed_001s() -> None:
    table = {cls: (p.max_retries, p.base) for cls, p in DEFAULT_POLICIES.items()}
    assert table == {
        Priority.CRITICAL: (5, timedelta(seconds=60)),
        Priority.HIGH: (3, timedelta(seconds=300)),
        Priority.MEDIUM: (3, timedelta(seconds=600)),
        Priority.LOW: (2, timedelta(seconds=1800)),
    }
    assert policy_for(9).max_attempts == 6
    assert policy_for(2).max_attempts == 3


def test_backoff_doubles_within_its_jitter() -> None:
    policy = RetryPolicy(max_retries=5, base=timedelta(seconds=60), jitter=0.1)
    rng = random.Random(7)
    for n, nominal in [(1, 60), (2, 120), (3, 240), (4, 480), (5, 960)]:
        delays = [policy.delay(n, rng).total_seconds() for _ in range(200)]
        assert min(delays) >= nominal * 0.9
        assert max(delays) <= nominal * 1.1
        assert max(delays) - min(delays) > nominal * 0.1  # jitter spreads them


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(max_retries=30, base=timedelta(seconds=60), jitter=0, max_delay=timedelta(hours=1))
    assert policy.delay(20) == timedelta(hours=1)


def test_progress_percentage_prefers_items_then_steps() -> None:
    assert Progress(total=200, processed=131).percentage == 65.5
    assert Progress(step=3, total_steps=4).percentage == 50.0
    assert Progress().percentage == 0.0
    assert Progress(total=10, processed=50).percentage == 100.0


def test_settings_read_seed_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_LOG_ENTRIES", "250")
    monkeypatch.setenv("DEFAULT_TIMEOUT_MINUTES", "30")
    monkeypatch.setenv("MAX_TIMEOUT_MINUTES", "120")
    monkeypatch.setenv("CONVEYOR_QUEUES", "a, b")
    settings = Settings()
    assert settings.max_log_entries == 250
    assert settings.default_timeout == timedelta(minutes=30)
    assert settings.max_timeout == timedelta(minutes=120)
    assert settings.queue_list == ["a", "b"]


def test_settings_read_seed_003s_api_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_HOST", "0.0.0.0")
    monkeypatch.setenv("API_PORT", "9001")
    monkeypatch.setenv("CORS_ORIGINS", '["*"]')
    settings = Settings()
    assert (settings.api_host, settings.api_port, settings.cors_origin_list) == ("0.0.0.0", 9001, ["*"])
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings().cors_origin_list == ["https://a.example", "https://b.example"]
    monkeypatch.setenv("CORS_ORIGINS", "[not json")
    with pytest.raises(ValueError, match="JSON list"):
        Settings()


def test_seed_003s_cache_ttl_and_batch_size_reach_the_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from conveyor import Conveyor

    monkeypatch.setenv("CACHE_TTL", "120")
    monkeypatch.setenv("BATCH_MAX_SIZE", "7")
    app = Conveyor.from_settings(Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}", packs="none"))
    assert app.cache.ttl == timedelta(seconds=120)
    assert app.batches.max_size == 7


def test_vacalibration_data_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_VACALIBRATION_DATA", "/srv/vacalibration")
    assert Settings().vacalibration_data == "/srv/vacalibration"
    from conveyor.packs.calibration import data

    assert data.configured_directory() == Path("/srv/vacalibration")


async def test_redis_and_celery_variables_are_accepted_and_ignored_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from conveyor import Conveyor

    for name, value in {
        "REDIS_HOST": "localhost",
        "REDIS_PORT": "6379",
        "CELERY_BROKER_URL": "redis://x:6379/1",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}", packs="none")  # they do not upset Settings
    with caplog.at_level("INFO", logger="conveyor"):
        async with Conveyor.from_settings(settings) as app:
            await app.engine.enqueue("noop", {})  # and the app works without them
    lines = [r.getMessage() for r in caplog.records if "Redis" in r.getMessage()]
    assert len(lines) == 1
    assert "REDIS_HOST, REDIS_PORT, CELERY_BROKER_URL set but ignored" in lines[0]
    assert "needs neither Redis nor Celery" in lines[0]

    caplog.clear()
    for name in ("REDIS_HOST", "REDIS_PORT", "CELERY_BROKER_URL"):
        monkeypatch.delenv(name)
    with caplog.at_level("INFO", logger="conveyor"):
        async with Conveyor.from_settings(settings):
            pass
    assert not [r for r in caplog.records if "Redis" in r.getMessage()]
