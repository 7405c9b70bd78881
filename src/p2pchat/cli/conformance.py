"""``p2pchat conformance MULTIADDR``: run the conformance cases against a node and report.

Exit status (specs/cli.md, specs/conformance.md): 1 when a MUST case fails, 0 otherwise, 2 for
a usage error or a target that cannot be reached. The suites load trio and the cores only when
the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from . import args as types
from .common import EXIT_USAGE, Command, start_logging

if TYPE_CHECKING:
    from ..conformance.registry import CaseResult

SUITE_NAMES: Final = ("multistream", "noise", "yamux", "identify", "ping", "perf", "chat")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's arguments (called by the parser in ``cli/entry.py``)."""
    parser.add_argument(
        "target",
        type=types.multiaddr,
        metavar="MULTIADDR",
        help="the node: /ip4/.../tcp/PORT[/p2p/ID] (with /p2p the ID is checked)",
    )
    parser.add_argument(
        "--suite",
        action="append",
        choices=SUITE_NAMES,
        default=[],
        help="run only this suite (repeatable; default: all)",
    )
    parser.add_argument(
        "--case",
        action="append",
        default=[],
        metavar="PATTERN",
        help="run only cases whose id matches (substring or shell wildcard; repeatable)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object with a 'cases' list instead of the table",
    )
    parser.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML to FILE")
    parser.add_argument(
        "--timeout",
        type=types.seconds,
        default=10.0,
        help="seconds each case may take (default: 10)",
    )


def _progress(result: CaseResult) -> None:
    print(f"{result.case.id}: {result.outcome.value}", file=sys.stderr, flush=True)


def cmd_conformance(args: argparse.Namespace) -> int:
    """Run the selected cases; print the table (or JSON); write JUnit XML if asked."""
    import trio

    from ..conformance import CASES, load_suites, select
    from ..conformance.report import exit_status, to_json, to_junit, to_table
    from ..conformance.runner import run_cases
    from ..conformance.transport import TargetUnreachableError

    load_suites()
    chosen = select(CASES.values(), suites=args.suite, patterns=args.case)
    if not chosen:
        print("p2pchat: error: no case matches --suite/--case", file=sys.stderr)
        return EXIT_USAGE
    start_logging(args)
    progress = _progress if args.log_level in ("info", "debug") else None
    try:
        results = trio.run(
            lambda: run_cases(args.target, chosen, case_seconds=args.timeout, on_result=progress)
        )
    except TargetUnreachableError as exc:
        print(f"p2pchat: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    target = str(args.target)
    if args.junit is not None:
        try:
            args.junit.write_bytes(to_junit(target, results))
        except OSError as exc:
            print(f"p2pchat: error: cannot write {args.junit}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
    if args.json:
        print(json.dumps(to_json(target, results), indent=2))
    else:
        print(to_table(results))
    return exit_status(results)


COMMANDS: Final[dict[str, Command]] = {"conformance": cmd_conformance}
