"""Drive an operator the way Airflow does: execute, run each deferral's trigger, resume."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

from airflow.sdk.exceptions import TaskDeferred


class FakeTI:
    """A task instance's XComs and tries: ``try_number`` of ``max_tries + 1`` (Airflow retries while
    ``try_number <= max_tries``). A retry is a new FakeTI (Airflow clears XComs between tries)."""

    def __init__(self, try_number: int = 1, max_tries: int = 0) -> None:
        self.xcoms: dict[tuple[str, str], Any] = {}
        self.stats_tags: dict[str, str] = {}
        self.try_number = try_number
        self.max_tries = max_tries

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[("self", key)] = value

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value") -> Any:
        return self.xcoms.get(("self", key))


class FakeStateStore:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


def context(
    run_id: str | None = None, dag_id: str = "continuous_training", try_number: int = 1, max_tries: int = 0
) -> dict[str, Any]:
    return {
        "dag": SimpleNamespace(dag_id=dag_id),
        "run_id": run_id or f"manual__{uuid.uuid4().hex[:8]}",
        "ti": FakeTI(try_number, max_tries),
        "params": {},
        "task_state_store": FakeStateStore(),
    }


async def first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("trigger ended without an event")


def run_operator(op: Any, ctx: dict[str, Any], max_deferrals: int = 10) -> Any:
    """Execute, then for each deferral run its trigger to its first event and resume the operator."""
    call: Any = lambda: op.execute(ctx)  # noqa: E731
    for _ in range(max_deferrals):
        try:
            return call()
        except TaskDeferred as deferred:
            event = asyncio.run(first_event(deferred.trigger))
            method = getattr(op, deferred.method_name)
            kwargs = deferred.kwargs or {}
            call = lambda m=method, e=event, k=kwargs: m(ctx, event=e, **k)  # noqa: E731
    raise AssertionError("too many deferrals")


def defer_once(op: Any, ctx: dict[str, Any]) -> TaskDeferred:
    try:
        op.execute(ctx)
    except TaskDeferred as deferred:
        return deferred
    raise AssertionError("the operator did not defer")
