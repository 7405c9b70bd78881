"""What the command modules share: the error for a user's mistake, the data dir, one request to
the running node, and running a Trio function with its errors told in one line.

Nothing here imports trio or the node's layers at module level (see :mod:`p2pchat.cli`).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, TypeVar, TypeVarTuple, Unpack

from ..app import client
from ..app.datadir import resolve_data_dir
from ..app.logsetup import DEFAULT_FORMAT, DEFAULT_LEVEL, configure_logging
from ..errors import P2PChatError

EXIT_USAGE: Final = 2
EXIT_FAILURE: Final = 1
EXIT_INTERRUPTED: Final = 130
#: ``send`` waited, and the message is still pending (stored and queued on the node).
EXIT_PENDING: Final = 3

#: A command: the parsed command line in, the exit status out.
Command = Callable[[argparse.Namespace], int]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class UsageError(P2PChatError):
    """The command line asks for something that cannot be done."""


class CommandError(P2PChatError):
    """A command failed for a reason outside the command line (timed out, connection lost)."""


def data_dir(args: argparse.Namespace) -> Path:
    """The data dir the command line names (``--data-dir``, else the environment)."""
    return resolve_data_dir(args.data_dir)


def start_logging(
    args: argparse.Namespace, *, level: str | None = None, fmt: str | None = None
) -> None:
    """Send the log records of this process to stderr, as ``--log-level`` and ``--log-format``
    say (else ``level`` and ``fmt``, e.g. the config file's, else the defaults). The commands
    that run the node's layers in this process call it; the others log nothing.

    Raises:
        ValueError: an unknown level or format.
    """
    configure_logging(
        args.log_level or level or DEFAULT_LEVEL, args.log_format or fmt or DEFAULT_FORMAT
    )


def call(args: argparse.Namespace, op: str, **request: Any) -> Any:
    """Run one operation on the node running on the command line's data dir (blocking).

    Raises:
        NodeNotRunningError: no node runs there.
        RemoteCommandError: the node refused; its reason is the message.
        ControlError: the connection broke.
    """
    return client.call(data_dir(args), op, **request)


def call_stream(
    args: argparse.Namespace, op: str, on_event: Callable[[dict[str, Any]], None], **request: Any
) -> Any:
    """Run one streaming operation (events to ``on_event``) on the node; its result.

    Raises:
        NodeNotRunningError, RemoteCommandError, ControlError: as :func:`call`.
    """
    return client.stream(data_dir(args), op, on_event, **request)


def sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error inside nested exception groups, or the group itself if there are more."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def run_trio(fn: Callable[[Unpack[Ts]], Awaitable[T]], *args: *Ts) -> T:
    """``trio.run(fn, *args)`` (trio loads here, for the commands that need it), with trio's
    failures translated at the boundary and an error that a nursery wrapped unwrapped.

    Raises:
        CommandError: a deadline passed, or a connection broke.
        P2PChatError: whatever ``fn`` raised.
    """
    import trio

    try:
        try:
            return trio.run(fn, *args)
        except BaseExceptionGroup as group:
            error = sole_error(group)
            if error is group:
                raise
            raise error from group
    except trio.TooSlowError:
        raise CommandError("timed out") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise CommandError(f"connection lost: {exc}") from None
