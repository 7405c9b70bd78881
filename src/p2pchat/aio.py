"""Small Trio helpers shared by the drivers (never imported by a sans-IO core)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


@asynccontextmanager
async def open_service_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for the tasks that serve the body of an ``async with``.

    When the body ends, however it ends, the nursery is cancelled; an exception the body raises
    comes out as itself, not wrapped in the nursery's ``ExceptionGroup``, so callers catch
    ``except SomeError`` as they would without the nursery. Errors of the tasks themselves still
    come out as the nursery raises them.
    """
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        try:
            yield nursery
        except BaseException as exc:
            body_error = exc
        finally:
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
