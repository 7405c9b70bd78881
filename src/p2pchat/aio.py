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

    A body cancelled by the nursery's own cancel scope (someone called
    ``nursery.cancel_scope.cancel()`` while it ran) ends the block quietly, as a plain nursery
    would; a cancellation from an enclosing scope goes on to that scope.
    """
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        try:
            yield nursery
        except BaseException as exc:
            body_error = exc
        finally:
            nursery.cancel_scope.cancel()
    if body_error is None:
        return
    # Cancelled is re-raised out here, past the scope that owns it, would escape that scope: keep
    # only the other errors, and let an enclosing cancelled scope raise its own Cancelled.
    rest: BaseException | None
    if isinstance(body_error, trio.Cancelled):
        rest = None
    elif isinstance(body_error, BaseExceptionGroup):
        _, rest = body_error.split(trio.Cancelled)
    else:
        rest = body_error
    if rest is None:
        await trio.lowlevel.checkpoint_if_cancelled()
        return
    raise rest
