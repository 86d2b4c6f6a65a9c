"""Job types: what a job does, its validated input, and its defaults; and the registry of them.

Two ways to declare one. A class, for job types with estimates or a cache key::

    class Resize(JobType):
        kind = "images.resize"
        queue = "images"

        async def execute(self, ctx: Context, data: ResizeInput) -> dict: ...

    registry.add(Resize)

or a function, for the common case::

    @registry.job_type("reports.export", queue="exports", runs_in="thread")
    def export(ctx: Context, data: ExportInput) -> ExportResult: ...

The input model is read from the annotation of `data`. `runs_in` defaults to "loop" for
`async def` and "thread" otherwise; "process" runs it in a child process that a hard cancel
or hard timeout can kill.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from conveyor.errors import DuplicateJobType, InvalidJobData, UnknownJobType, UnstorableResult
from conveyor.model import Priority, PriorityLike, PrunedJob
from conveyor.retry import RetryPolicy

RunsIn = Literal["loop", "thread", "process"]
RUNS_IN: tuple[RunsIn, ...] = ("loop", "thread", "process")

_ANY = TypeAdapter(Any)


class JobType:
    """Subclass and set `kind`; override `execute`, and optionally the estimates and cache key."""

    kind: ClassVar[str]
    queue: ClassVar[str] = "default"
    priority: ClassVar[PriorityLike] = Priority.MEDIUM
    timeout: ClassVar[timedelta | None] = None
    retry: ClassVar[RetryPolicy | None] = None  # None: the policy of the job's priority class
    runs_in: ClassVar[RunsIn | None] = None  # None: "loop" for async execute, else "thread"
    sensitive: ClassVar[bool] = False  # payload and result are sealed at rest (security issue)
    # Made by the platform, or started through an endpoint of its own that checks who may:
    # the generic creation paths (POST /api/v1/jobs, batches, schedules over HTTP) refuse it.
    internal: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def execute(self, ctx: Any, data: Any) -> Any:
        raise NotImplementedError

    def estimate_time(self, data: Any) -> timedelta | None:
        """How long a job with this input is expected to run, if the job type can tell."""
        return None

    def estimate_memory(self, data: Any) -> int | None:
        """Peak bytes a job with this input is expected to need, if the job type can tell."""
        return None

    def cache_key(self, data: Any) -> str | None:
        """A key under which an identical job's result may be reused; None: never reused."""
        return None


@dataclass(frozen=True)
class Definition:
    """A registered job type, resolved: what the engine and worker need to know of it."""

    kind: str
    input_model: type[BaseModel] | None
    implementation: JobType
    queue: str
    priority: PriorityLike
    timeout: timedelta | None
    retry: RetryPolicy | None
    runs_in: RunsIn
    sensitive: bool
    # Where a child process finds the implementation: (module, qualified name, is a class).
    import_path: tuple[str, str, bool]
    # Not offered on the generic creation paths (see JobType.internal).
    internal: bool = False

    def parse(self, data: Any) -> Any:
        """The validated input, or InvalidJobData naming every offending field."""
        if self.input_model is None:
            return data
        try:
            if isinstance(data, self.input_model):
                return data
            return self.input_model.model_validate(data)
        except ValidationError as exc:
            raise InvalidJobData(self.kind, field_errors(exc)) from None

    def parse_many(self, items: list[dict[str, Any]]) -> list[Any]:
        """Each of `items` validated as parse would, in one call into pydantic (bulk enqueue's
        way: a quarter of the cost per item). For a job type with an input model only; a
        ValidationError's locations start with the item's position."""
        return self._many.validate_python(items)

    def dump_many(self, parsed: list[Any]) -> list[dict[str, Any]]:
        """dump_input of each of parse_many's results, in one call."""
        return typing.cast(list[dict[str, Any]], self._many.dump_python(parsed, mode="json"))

    @functools.cached_property
    def _many(self) -> TypeAdapter[list[Any]]:
        return TypeAdapter(list[self.input_model])  # type: ignore[name-defined]

    def dump_input(self, data: Any) -> dict[str, Any]:
        """The JSON form of validated input, as stored with the job."""
        parsed = self.parse(data)
        if isinstance(parsed, BaseModel):
            return parsed.model_dump(mode="json")
        return typing.cast(dict[str, Any], jsonable(parsed))


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]


def jsonable(value: Any) -> Any:
    """Results are stored as JSON: pydantic models, dataclasses, datetimes and UUIDs convert.

    Raises UnstorableResult (a permanent error: trying again gives the same result) for what
    JSON cannot hold (an open connection, a set of arbitrary objects), so that such a result
    fails its own job instead of every batch of outcomes it would be written in. NaN and
    infinities are stored as null, as pydantic's JSON mode does.
    """
    try:
        return _ANY.dump_python(value, mode="json")
    except PydanticSerializationError as exc:
        raise UnstorableResult(f"the job's result cannot be stored as JSON: {exc}") from None


def _input_model(func: Callable[..., Any], kind: str) -> type[BaseModel] | None:
    params = list(inspect.signature(func).parameters)
    if len(params) < 2:
        raise TypeError(f"job type {kind!r}: execute must take (ctx, data)")
    hints = typing.get_type_hints(func)
    model = hints.get(params[1])
    if model is None or model is Any:
        return None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"job type {kind!r}: annotate data with a pydantic model, got {model!r}")
    return model


def _runs_in(func: Callable[..., Any], declared: RunsIn | None, kind: str) -> RunsIn:
    is_async = inspect.iscoroutinefunction(func)
    if declared is None:
        return "loop" if is_async else "thread"
    if declared not in RUNS_IN:
        raise ValueError(f"job type {kind!r}: runs_in must be one of {RUNS_IN}")
    if declared == "loop" and not is_async:
        raise TypeError(f"job type {kind!r}: runs_in='loop' needs an async execute")
    if declared != "loop" and is_async:
        raise TypeError(f"job type {kind!r}: an async execute runs on the loop; use a plain def")
    return declared


class _FunctionJobType(JobType):
    def __init__(self, func: Callable[..., Any]) -> None:
        self._func = func

    def execute(self, ctx: Any, data: Any) -> Any:
        return self._func(ctx, data)


PruneHook = Callable[[Path, list[PrunedJob]], None]


class Registry:
    """The job types a process knows, by kind."""

    def __init__(self, definitions: Iterable[Definition] = ()) -> None:
        self._by_kind: dict[str, Definition] = {}
        # kind -> functions told of the jobs retention deleted: `hook(data_dir, jobs)`
        self.prune_hooks: dict[str, list[PruneHook]] = {}
        for d in definitions:
            self._register(d)

    def on_pruned(self, kind: str) -> Callable[[PruneHook], PruneHook]:
        """Register `hook(data_dir, jobs)`, called after retention deleted finished jobs of
        `kind` (a list of model.PrunedJob), to remove files the job type keeps for them.
        It runs in the leader after the delete committed; an exception is logged, not raised.

        Example::

            @registry.on_pruned("reports.export")
            def remove_exports(data_dir: Path, jobs: list[PrunedJob]) -> None:
                for job in jobs:
                    (data_dir / "exports" / f"{job.id}.csv").unlink(missing_ok=True)
        """

        def register(hook: PruneHook) -> PruneHook:
            self.prune_hooks.setdefault(kind, []).append(hook)
            return hook

        return register

    def add(self, cls: type[JobType]) -> type[JobType]:
        """Register a JobType subclass (usable as a class decorator)."""
        kind = getattr(cls, "kind", None)
        if not kind:
            raise TypeError(f"{cls.__name__} must set kind")
        implementation = cls()
        execute = implementation.execute  # bound: its signature is (ctx, data)
        self._register(
            Definition(
                kind=kind,
                input_model=_input_model(execute, kind),
                implementation=implementation,
                queue=cls.queue,
                priority=cls.priority,
                timeout=cls.timeout,
                retry=cls.retry,
                runs_in=_runs_in(execute, cls.runs_in, kind),
                sensitive=cls.sensitive,
                import_path=(cls.__module__, cls.__qualname__, True),
                internal=cls.internal,
            )
        )
        return cls

    def job_type(
        self,
        kind: str,
        *,
        queue: str = "default",
        priority: PriorityLike = Priority.MEDIUM,
        timeout: timedelta | None = None,
        retry: RetryPolicy | None = None,
        runs_in: RunsIn | None = None,
        sensitive: bool = False,
        internal: bool = False,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register a function `execute(ctx, data)` as a job type; the function is returned as is."""

        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            self._register(
                Definition(
                    kind=kind,
                    input_model=_input_model(func, kind),
                    implementation=_FunctionJobType(func),
                    queue=queue,
                    priority=priority,
                    timeout=timeout,
                    retry=retry,
                    runs_in=_runs_in(func, runs_in, kind),
                    sensitive=sensitive,
                    import_path=(func.__module__, func.__qualname__, False),
                    internal=internal,
                )
            )
            func.__conveyor_kind__ = kind  # type: ignore[attr-defined]
            return func

        return register

    def include(self, other: Registry) -> None:
        for d in other:
            self._register(d)
        for kind, hooks in other.prune_hooks.items():
            mine = self.prune_hooks.setdefault(kind, [])
            mine.extend(h for h in hooks if h not in mine)

    def _register(self, definition: Definition) -> None:
        existing = self._by_kind.get(definition.kind)
        if existing is not None and existing.import_path != definition.import_path:
            raise DuplicateJobType(f"job type {definition.kind!r} is registered twice")
        self._by_kind[definition.kind] = definition

    def get(self, kind_or_type: str | type[JobType] | Callable[..., Any]) -> Definition:
        kind = kind_of(kind_or_type)
        try:
            return self._by_kind[kind]
        except KeyError:
            raise UnknownJobType(kind, self.offered()) from None

    def offered(self) -> list[str]:
        """The kinds the generic creation paths offer: all but the internal ones."""
        return sorted(d.kind for d in self._by_kind.values() if not d.internal)

    def kinds(self) -> list[str]:
        return sorted(self._by_kind)

    def __iter__(self) -> typing.Iterator[Definition]:
        return iter(list(self._by_kind.values()))

    def __contains__(self, kind: object) -> bool:
        return kind in self._by_kind


def kind_of(kind_or_type: str | type[JobType] | Callable[..., Any]) -> str:
    if isinstance(kind_or_type, str):
        return kind_or_type
    kind = getattr(kind_or_type, "__conveyor_kind__", None) or getattr(kind_or_type, "kind", None)
    if not isinstance(kind, str):
        raise TypeError(f"{kind_or_type!r} is not a registered job type")
    return kind


def load_implementation(import_path: tuple[str, str, bool]) -> Callable[[Any, Any], Any]:
    """In a child process: the execute callable named by a Definition's import_path."""
    module_name, qualname, is_class = import_path
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target().execute if is_class else target
