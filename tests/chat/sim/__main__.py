"""``make sim``: run seeded schedules of the group engine; replay or shrink a failing one.

python -m chat.sim --seed 18               replay one seed, shrink it if it fails
python -m chat.sim --seed 18 --keep 0,3,5  replay the shrunk schedule exactly
python -m chat.sim --runs 100000           seeds 0.. (or from --start), long schedules
"""

from __future__ import annotations

import argparse
import sys
import time

from .invariants import GATED, RULES
from .mutations import MUTATIONS
from .runner import Outcome, run_seed, shrink
from .schedule import LONG, SHORT, TINY


def _report(outcome: Outcome, args: argparse.Namespace, gated: frozenset[str]) -> None:
    assert outcome.violation is not None
    seed = outcome.schedule.seed
    rule = outcome.violation.rule
    print(f"FAIL seed {seed}: {outcome.violation} [{RULES.get(rule, rule)}]")
    if args.no_shrink:
        print(outcome.schedule.describe(indices=args.kept))
        return
    small, kept = shrink(outcome, gated=gated, mutation=args.mutate)
    print(f"shrunk to {len(kept)} of {len(outcome.schedule.steps)} steps: {small.violation}")
    print(small.schedule.describe(indices=kept))
    replay = f"make sim SEED={seed} KEEP={','.join(map(str, kept)) or 'none'}"
    if args.long:
        replay += " LONG=1"
    if args.tiny:
        replay += " TINY=1"
    if args.strict:
        replay += " STRICT=1"
    if args.mutate:
        replay += f" MUTATE={args.mutate}"
    print(f"replay: {replay}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chat.sim", description=__doc__)
    parser.add_argument("--seed", type=int, help="run this one seed")
    parser.add_argument("--keep", help="the steps to keep (indices, comma-separated)")
    parser.add_argument("--runs", type=int, default=200, help="seeds to run (no --seed)")
    parser.add_argument("--start", type=int, default=0, help="the first seed (no --seed)")
    parser.add_argument("--long", action="store_true", help="long schedules, up to 9 ratifiers")
    parser.add_argument("--tiny", action="store_true", help="tiny schedules (as CI runs most)")
    parser.add_argument(
        "--strict", action="store_true", help=f"also check the gated rules: {sorted(GATED)}"
    )
    parser.add_argument("--mutate", choices=sorted(MUTATIONS), help="switch an engine rule off")
    parser.add_argument("--no-shrink", action="store_true")
    args = parser.parse_args(argv)
    size = LONG if args.long else TINY if args.tiny else SHORT
    gated = frozenset(GATED) if args.strict else frozenset()
    args.kept = None
    if args.seed is not None:
        keep = None
        if args.keep is not None:
            keep = [] if args.keep == "none" else [int(i) for i in args.keep.split(",") if i]
        outcome = run_seed(args.seed, size, keep=keep, gated=gated, mutation=args.mutate)
        if outcome.violation is None:
            print(f"ok seed {args.seed}: {outcome.events} events, {outcome.counts}")
            return 0
        if keep is not None:
            args.no_shrink = True
            args.kept = keep
        _report(outcome, args, gated)
        return 1
    failed = 0
    began = time.perf_counter()
    cpu = time.process_time()
    for seed in range(args.start, args.start + args.runs):
        outcome = run_seed(seed, size, gated=gated, mutation=args.mutate)
        if outcome.violation is not None:
            failed += 1
            print(f"FAIL seed {seed}: {outcome.violation}", flush=True)
        if (seed - args.start + 1) % 100 == 0:
            rate = (seed - args.start + 1) / (time.perf_counter() - began)
            print(f"... {seed - args.start + 1} runs, {failed} failed, {rate:.1f}/s", flush=True)
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu
    print(
        f"{args.runs} schedules ({size.name}) in {elapsed:.1f} s "
        f"({cpu:.1f} s of CPU): {args.runs / elapsed:.1f} schedules/s, "
        f"{args.runs / cpu:.1f} per CPU second; {failed} failed"
    )
    if failed:
        flags = " LONG=1" if args.long else " TINY=1" if args.tiny else ""
        flags += " STRICT=1" if args.strict else ""
        flags += f" MUTATE={args.mutate}" if args.mutate else ""
        print(f"replay and shrink one: make sim SEED=<seed>{flags}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
