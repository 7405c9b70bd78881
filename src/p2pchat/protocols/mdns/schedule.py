"""The query schedule: a pure function of the query's index or of the time elapsed since start.

RFC 6762 section 5.2: at least 1 s between the first two queries, then at least doubling; we
keep the gap at ``interval`` (60 s) once it gets there.
"""

from __future__ import annotations

import math

from .constants import DEFAULT_QUERY_INTERVAL, FIRST_QUERY_GAP


def _check_schedule(first_delay: float, interval: float, first_gap: float) -> None:
    if not (first_delay >= 0 and first_gap > 0 and interval >= first_gap):
        raise ValueError(
            f"need first_delay >= 0 and interval >= first_gap > 0, got first_delay={first_delay},"
            f" first_gap={first_gap}, interval={interval}"
        )
    if not all(math.isfinite(x) for x in (first_delay, interval, first_gap)):
        raise ValueError("query schedule values must be finite")


def _doubling_steps(interval: float, first_gap: float) -> int:
    """How many gaps double before the gap reaches ``interval``."""
    steps = 0
    while first_gap * (1 << steps) < interval:
        steps += 1
    return steps


def query_offset(
    index: int,
    *,
    first_delay: float,
    interval: float = DEFAULT_QUERY_INTERVAL,
    first_gap: float = FIRST_QUERY_GAP,
) -> float:
    """Seconds from start to query number ``index`` (0 is the first).

    The first query goes at ``first_delay`` (RFC 6762 section 5.2 suggests 20-120 ms of
    random delay); the gaps after it are ``first_gap``, then twice as long each time, until
    they reach ``interval``, which they keep: with the defaults, 1, 2, 4, ..., 32, 60, 60, ...

    Raises:
        ValueError: ``index`` < 0, or ``first_delay`` < 0, or not 0 < first_gap <= interval.
    """
    _check_schedule(first_delay, interval, first_gap)
    if index < 0:
        raise ValueError(f"query index {index} < 0")
    doubling = min(index, _doubling_steps(interval, first_gap))
    # Gaps first_gap * 2**k for k < doubling sum to first_gap * (2**doubling - 1).
    return first_delay + first_gap * ((1 << doubling) - 1) + (index - doubling) * interval


def next_query_offset(
    elapsed: float,
    *,
    first_delay: float,
    interval: float = DEFAULT_QUERY_INTERVAL,
    first_gap: float = FIRST_QUERY_GAP,
) -> float:
    """The offset (from start) of the first query strictly later than ``elapsed`` seconds.

    Raises:
        ValueError: as :func:`query_offset`, or ``elapsed`` not finite.
    """
    _check_schedule(first_delay, interval, first_gap)
    if not math.isfinite(elapsed):
        raise ValueError(f"elapsed time {elapsed} is not finite")
    steps = _doubling_steps(interval, first_gap)
    for index in range(steps + 1):
        offset = query_offset(
            index, first_delay=first_delay, interval=interval, first_gap=first_gap
        )
        if offset > elapsed:
            return offset
    base = query_offset(steps, first_delay=first_delay, interval=interval, first_gap=first_gap)
    index = steps + math.floor((elapsed - base) / interval) + 1
    offset = query_offset(index, first_delay=first_delay, interval=interval, first_gap=first_gap)
    # Floating point may land on ``elapsed`` itself: step once more if so.
    return offset if offset > elapsed else offset + interval
