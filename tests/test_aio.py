from __future__ import annotations

import pytest
import trio
import trio.testing

from p2pchat.aio import open_service_nursery


class BodyError(Exception):
    pass


async def test_body_error_comes_out_unwrapped() -> None:
    async def body() -> None:
        async with open_service_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            raise BodyError

    with pytest.raises(BodyError):
        await body()


async def test_tasks_are_cancelled_when_the_body_ends() -> None:
    cancelled = False

    async def task() -> None:
        nonlocal cancelled
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled = True
            raise

    async with open_service_nursery() as nursery:
        nursery.start_soon(task)
        await trio.testing.wait_all_tasks_blocked()
    assert cancelled


async def test_a_task_error_still_propagates() -> None:
    async def fail() -> None:
        raise BodyError

    async def body() -> None:
        async with open_service_nursery() as nursery:
            nursery.start_soon(fail)
            await trio.sleep_forever()

    with pytest.RaisesGroup(BodyError):
        await body()


async def test_a_body_cancelled_by_the_nursery_itself_ends_quietly() -> None:
    with trio.fail_after(5):  # a Cancelled that escaped would fail the test instead
        async with open_service_nursery() as nursery:
            nursery.cancel_scope.cancel()
            await trio.sleep_forever()
    assert nursery.cancel_scope.cancel_called


async def test_a_cancellation_from_outside_still_reaches_its_scope() -> None:
    after_block = False
    with trio.CancelScope() as outer:
        async with open_service_nursery():
            outer.cancel()
            await trio.sleep_forever()
        after_block = True
    assert outer.cancelled_caught
    assert not after_block
