"""What a step tells the engine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass
class StepResult:
    """``outcome``:

    - ``next``: go on to the next step;
    - ``goto``: jump forward to the step ``goto`` (a key);
    - ``wait``: the step is done; go on to the next step at ``resume_at``;
    - ``defer``: run this same step again at ``resume_at`` (a deferred send);
    - ``end``: the run is completed (a failed condition without "otherwise");
    - ``exit``: the run leaves the flow early.

    ``reason`` is the step log's code (``passed``, ``condition_failed:order_status``,
    ``waited_until``, ``sent``, ``send_blocked``, ...).
    """

    outcome: str
    reason: str
    detail: str = ""
    goto: str = ""
    resume_at: datetime | None = None
    send: Any = None
