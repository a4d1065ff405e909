from __future__ import annotations

from celery import shared_task

from flows import engine


@shared_task(name="flows.advance_run_task")
def advance_run_task(run_id: int) -> str:
    return engine.advance_run(run_id=run_id)


@shared_task(name="flows.tick_task")
def tick_task() -> str:
    """The flows room's one beat task."""
    return engine.tick()
