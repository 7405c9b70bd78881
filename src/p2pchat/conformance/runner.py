"""Run the selected cases against one target, one after the other, each under a deadline.

A case passes when its function returns; :class:`~.registry.ViolationError` fails it with the
detail, :class:`~.registry.NotApplicableError` skips it. A deadline, a lost connection or the
target's bytes that our decoders refuse fail it too, with what happened. The run stops for
nothing but an unreachable target, which is checked once before the first case.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Final

import trio

from ..errors import P2PChatError
from ..identity import KeyPair
from ..multiaddr import Multiaddr
from .context import CaseContext
from .mux import StreamResetError
from .registry import Case, CaseResult, NotApplicableError, Outcome, ViolationError
from .transport import PeerClosedError, TargetUnreachableError, Transcript, connect_raw

__all__ = ["DEFAULT_TIMEOUT", "check_reachable", "run_cases"]

logger = logging.getLogger(__name__)

#: Seconds one case may take (``--timeout``).
DEFAULT_TIMEOUT: Final = 10.0
#: The share of a case's time it waits to see whether something happens (a close, an answer).
_STEP_SHARE: Final = 0.2
_MAX_STEP: Final = 2.0


async def check_reachable(target: Multiaddr, seconds: float) -> None:
    """Open and close one TCP connection to ``target``.

    Raises:
        TargetUnreachableError: it cannot be reached.
    """
    conn = await connect_raw(target, Transcript(), seconds)
    await conn.aclose()


async def run_cases(
    target: Multiaddr,
    cases: Sequence[Case],
    *,
    case_seconds: float = DEFAULT_TIMEOUT,
    on_result: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Run ``cases`` against ``target`` in order, each within ``case_seconds``; their results.

    Raises:
        TargetUnreachableError: no TCP connection can be made to ``target``.
    """
    await check_reachable(target, case_seconds)
    identity = KeyPair.generate()
    offered: dict[str, bool] = {}
    step = min(case_seconds * _STEP_SHARE, _MAX_STEP)
    results = []
    for item in cases:
        seconds = case_seconds * item.budget
        ctx = CaseContext(target, identity, step, seconds, offered)
        result = await _run_one(item, ctx, seconds)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


async def _run_one(item: Case, ctx: CaseContext, seconds: float) -> CaseResult:
    started = time.monotonic()
    outcome, detail = Outcome.PASS, ""
    try:
        with trio.fail_after(seconds):
            async with ctx.closing():
                await item.run(ctx)
    except NotApplicableError as exc:
        outcome, detail = Outcome.SKIP, str(exc)
    except ViolationError as exc:
        outcome, detail = Outcome.FAIL, str(exc)
    except trio.TooSlowError:
        outcome, detail = Outcome.FAIL, f"no answer within the case's {seconds:g} s"
    except PeerClosedError as exc:
        outcome, detail = Outcome.FAIL, f"{exc} unexpectedly"
    except StreamResetError as exc:
        outcome, detail = Outcome.FAIL, f"{exc} unexpectedly"
    except TargetUnreachableError as exc:
        outcome, detail = Outcome.FAIL, str(exc)
    except P2PChatError as exc:
        outcome, detail = Outcome.FAIL, f"the target's bytes were refused: {exc}"
    except OSError as exc:
        outcome, detail = Outcome.FAIL, f"connection error: {exc}"
    if outcome is Outcome.FAIL and ctx.transcript.render():
        detail += f" [transcript: {ctx.transcript.render()}]"
    seconds = time.monotonic() - started
    logger.debug("%s: %s in %.3f s %s", item.id, outcome.value, seconds, detail)
    return CaseResult(item, outcome, detail, seconds)
