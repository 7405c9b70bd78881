"""yamux flow control: when to return receive credit, and how the window grows.

Windows are per stream, 256 KiB at first (spec.md "Flow Control"). The application reports
consumed bytes; once the credit we could grant reaches half the stream's current maximum window we
send it in one WindowUpdate. Auto-tuning follows go-yamux: if that happens less than
``autotune_rtt_factor`` round trips after the previous update, the maximum window doubles, up to
``max_window`` (16 MiB). Nothing here reads a clock: the caller passes ``now`` and the last
round-trip time.
"""

from __future__ import annotations

from .streams import StreamRecord


def pending_credit(s: StreamRecord) -> int:
    """Credit ``s`` could be granted now: its maximum window less what the peer holds and what
    is received but not yet consumed."""
    return s.recv_window_max - s.recv_window - s.buffered


def credit_due(
    s: StreamRecord,
    *,
    now: float | None,
    rtt: float | None,
    max_window: int,
    autotune_rtt_factor: float,
) -> int:
    """The credit to grant ``s`` in a WindowUpdate after the application consumed some of its
    bytes, or 0 while less than half its maximum window is due.

    With ``now`` (any monotonic clock, seconds) and ``rtt`` known, a grant due sooner than
    ``autotune_rtt_factor`` round trips after the previous one doubles ``s.recv_window_max``
    (up to ``max_window``) and includes the growth. Updates ``s.epoch`` and
    ``s.recv_window_max``; the caller queues the frame.
    """
    epoch = s.epoch
    if now is not None and epoch is None:
        s.epoch = now
    window_max = s.recv_window_max
    grant = window_max - s.recv_window - s.buffered
    if grant * 2 < window_max:
        return 0
    if now is not None:
        if (
            rtt is not None
            and epoch is not None
            and window_max < max_window
            and now - epoch < rtt * autotune_rtt_factor
        ):
            grown = min(window_max * 2, max_window)
            grant += grown - window_max
            s.recv_window_max = grown
        s.epoch = now
    return grant
