"""Define a job type, enqueue jobs, run a worker until they are done.

python examples/quickstart.py            # on ./quickstart.db (SQLite)
CONVEYOR_DATABASE_URL=postgresql://… python examples/quickstart.py

A database of its own by default: beside a `conveyor serve` on ./conveyor.db, that server's
worker would claim these jobs too, and it does not know their type.
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel, Field

from conveyor import Context, Conveyor, Registry, Settings

jobs = Registry()


class WordCount(BaseModel):
    texts: list[str] = Field(min_length=1, max_length=10_000)


@jobs.job_type("examples.word_count", queue="default", priority="high")
async def word_count(ctx: Context, data: WordCount) -> dict[str, int]:
    total = 0
    for n, text in enumerate(data.texts, start=1):
        ctx.checkpoint()  # a cancel asked for this job stops it here
        total += len(text.split())
        ctx.progress(processed=n, total=len(data.texts))
    ctx.info(f"counted {total} words", component="counter")
    return {"texts": len(data.texts), "words": total}


async def main() -> None:
    settings = Settings(database_url=os.environ.get("CONVEYOR_DATABASE_URL", "sqlite:///quickstart.db"))
    async with Conveyor.from_settings(settings, registries=[jobs]) as conveyor:
        one = await conveyor.engine.enqueue("examples.word_count", {"texts": ["a b c", "d e"]})
        # Many jobs of one type and options in one transaction (enqueue_many takes a
        # JobRequest per job, for jobs that differ).
        many = await conveyor.engine.enqueue_each(
            word_count, [{"texts": [f"text number {i}"]} for i in range(100)], labels={"batch": "demo"}
        )
        worker = conveyor.worker(concurrency=20)
        running = asyncio.create_task(worker.run())
        done = await conveyor.engine.wait(one.id, timeout=30)
        await conveyor.engine.wait(many[-1].id, timeout=30)
        worker.stop()
        await running
        print(done.status.value, done.result)  # noqa: T201 - an example prints


if __name__ == "__main__":
    asyncio.run(main())
