"""Benchmark: how long a ``p2pchat`` command takes, start-up included, as a user's shell sees it.

Starts one node (``p2pchat node``) on a temporary data dir, listening on 127.0.0.1 with mDNS off,
then runs a command that talks to it through the control socket (default ``status``) N times,
and ``p2pchat --version`` N times, each a fresh ``python -m p2pchat`` process, and prints the
median and p90 wall time of each (and of a bare ``python -c pass``, the interpreter's own floor).

    python tools/bench_cli.py [--runs 30] [--command status] [--src DIR] [--json]

Bytecode is cached (in a temporary ``PYTHONPYCACHEPREFIX``), as it is for an installed package;
``--no-bytecode-cache`` measures with every module compiled at every run instead.
``--src`` puts another checkout's ``src`` on ``PYTHONPATH`` (the node and the commands both
run from it), to compare a change against the code before it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from benchlib import REPO, BenchError

NODE_START_TIMEOUT: Final = 30.0
COMMAND_TIMEOUT: Final = 30.0


def _env(src: Path, pycache: Path | None) -> dict[str, str]:
    """The commands' environment: ``src`` on the path; compiled bytecode cached under
    ``pycache`` (as an installed package has it), or never cached when None."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src)
    env.pop("P2PCHAT_DATA_DIR", None)
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


@contextmanager
def running_node(env: dict[str, str], data_dir: Path) -> Iterator[str]:
    """A node on ``data_dir`` for the duration of the block; its first address.

    Raises:
        BenchError: the node exited or did not print its address in time.
    """
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p2pchat",
            "--data-dir",
            str(data_dir),
            "node",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        address = process.stdout.readline().strip()
        if not address:
            errors = process.stderr.read() if process.stderr else ""
            raise BenchError(f"the node exited before printing its address: {errors[-2000:]}")
        socket_path = data_dir / "control.sock"
        deadline = time.monotonic() + NODE_START_TIMEOUT
        while not socket_path.exists():
            if time.monotonic() > deadline or process.poll() is not None:
                raise BenchError("the node did not open its control socket")
            time.sleep(0.01)
        yield address
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def time_runs(argv: Sequence[str], env: dict[str, str], runs: int) -> list[float]:
    """Wall times in milliseconds of ``runs`` runs of ``argv`` (one warm-up run first).

    Raises:
        BenchError: a run failed.
    """
    times: list[float] = []
    for n in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(
            list(argv),
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        elapsed = (time.perf_counter() - start) * 1e3
        if done.returncode != 0:
            raise BenchError(f"{' '.join(argv[2:])} failed: {done.stderr.strip()[-2000:]}")
        if n > 0:
            times.append(elapsed)
    return times


def _figures(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(ordered), "p90_ms": p90, "min_ms": ordered[0]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30, help="runs of each command (30)")
    parser.add_argument("--command", default="status", help="the control command to time (status)")
    parser.add_argument(
        "--src", type=Path, default=REPO / "src", help="the src dir to run (this checkout's)"
    )
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="compile every module at every run (as with PYTHONDONTWRITEBYTECODE=1); by default "
        "bytecode is cached in a temporary PYTHONPYCACHEPREFIX, as an installed package has it",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    src: Path = args.src.resolve()
    root = Path(tempfile.mkdtemp(prefix="p2pchat-bench-cli-"))
    cached = not args.no_bytecode_cache
    env = _env(src, root / "pycache" if cached else None)
    try:
        data_dir = root / "node"
        with running_node(env, data_dir):
            base = [sys.executable, "-m", "p2pchat"]
            floor = time_runs([sys.executable, "-c", "pass"], env, args.runs)
            results = {
                "python -c pass": _figures(floor),
                "--version": _figures(time_runs([*base, "--version"], env, args.runs)),
                args.command: _figures(
                    time_runs(
                        [*base, "--data-dir", str(data_dir), *args.command.split()], env, args.runs
                    )
                ),
            }
    except BenchError as exc:
        sys.exit(f"bench_cli: {exc}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        report = {"src": str(src), "runs": args.runs, "bytecode_cache": cached, "results": results}
        print(json.dumps(report))
        return 0
    how = "bytecode cached" if cached else "no bytecode cache"
    print(f"p2pchat start-up, {args.runs} runs each, {how}, src {src}")
    for name, figures in results.items():
        print(
            f"  {name:<16} median {figures['median_ms']:6.1f} ms   p90 {figures['p90_ms']:6.1f} ms"
            f"   min {figures['min_ms']:6.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
