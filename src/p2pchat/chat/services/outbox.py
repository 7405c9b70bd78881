"""The outbox service: gives the engine a :class:`Tick` whenever it has asked to be woken.

The engine keeps the outbox schedule (retries with backoff, re-writing a message after a roster
change, attempts that time out) and the anti-entropy interval; this task only sleeps until the
engine's next wake, or until an action may have moved it.
"""

from __future__ import annotations

import math

from ..core.events import Tick
from .runtime import Runtime, now_ms


async def run_outbox(runtime: Runtime) -> None:
    """Tick the engine at its next wake, for ever (cancel to stop)."""
    while True:
        wake = runtime.engine.next_wake()
        timeout = math.inf if wake is None else max(0.0, (wake - now_ms()) / 1000)
        await runtime.wait_rearmed(timeout)
        if wake is not None and now_ms() >= wake:
            await runtime.handle(Tick(now_ms()))
