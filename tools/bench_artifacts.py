"""Benchmark: artifacts of any size between five ``p2pchat node`` processes on 127.0.0.1.

    python tools/bench_artifacts.py [--sizes 64,1024] [--kill-at 0.5] [--keep]

Three ratifiers (``r1`` owns the group; quorum 2 of 3) and two users (``m1``, ``m2``), each a
``p2pchat node`` process with its own data dir under a temporary directory, all connected to
each other. First ``p2pchat perf`` downloads 256 MiB from ``r1`` to ``m2`` (two of the same
nodes): the ceiling of one connection here. Then ``m1`` sends one file of each size
(``send.file`` on its control socket) and the bench notes, from the same monotonic clock:

* *sealed*: the last progress event of ``send.file`` (the file is chunked and stored at ``m1``);
* *ratified*: ``send.file`` answers (a quorum of ratifiers holds every chunk: they vote only
  then);
* *held* at each other node: its ``<root>.complete`` marker appears in its blob directory.

Per receiver, MiB/s = size / (held - start of its fetch), where a ratifier starts when the file
is sealed (the vote request asks it to fetch) and a user when the message is ratified (it
fetches on delivery). Peak RSS is ``VmHWM`` of ``/proc/<pid>/status`` for every node process.

With ``--kill-at F`` (default 0.5), during the largest size ``m2`` is killed (SIGKILL) once it
holds F of the chunks, restarted on the same data dir, and the bench shows that it finishes
without fetching again what it had: every blob file present at the kill is unchanged (inode and
mtime) at the end, and the restarted node's log says how many chunks it fetched.

Everything stays on 127.0.0.1; every wait is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parent.parent / "src"
sys.path.insert(0, str(SRC))

from p2pchat.app import client  # noqa: E402
from p2pchat.app.control_protocol import ControlError  # noqa: E402

MIB = 1024 * 1024
NAMES = ("r1", "r2", "r3", "m1", "m2")
CONFIG = """\
[chat]
send_timeout = 3600.0
[discovery]
mdns = false
"""
STEP_LIMIT = 60.0


def log(text: str) -> None:
    print(text, flush=True)


class Node:
    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.dir = root / name
        self.dir.mkdir(mode=0o700, parents=True)
        self.dir.chmod(0o700)
        (self.dir / "config.toml").write_text(CONFIG)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.addr = ""
        self.peer_id = ""

    @property
    def log_path(self) -> Path:
        return self.dir / f"node-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        args = [sys.executable, "-m", "p2pchat", "--data-dir", str(self.dir), "node"]
        args += ["--listen", "/ip4/127.0.0.1/tcp/0", "--log-level", "info"]
        if self.name == "r1":
            args.append("--enable-perf")
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        with open(self.log_path, "wb") as fh:
            self.process = subprocess.Popen(args, stderr=fh, stdout=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + STEP_LIMIT
        while True:
            try:
                status = self.call("status")
                break
            except ControlError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} did not start; see {self.log_path}") from None
                time.sleep(0.1)
        self.addr = status["addrs"][0]
        self.peer_id = status["peer_id"]

    def call(self, op: str, **args: Any) -> Any:
        return client.call(self.dir, op, **args)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STEP_LIMIT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STEP_LIMIT)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def peak_rss_mib(self) -> float:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) / 1024 if match else float("nan")

    def blob_dir(self) -> Path:
        return self.dir / "blobs"

    def complete(self, root: str) -> bool:
        return any(self.blob_dir().glob(f"*/{root}.complete"))

    def blob_files(self) -> dict[str, tuple[int, int]]:
        out = {}
        for path in self.blob_dir().glob("*/*/*"):
            if len(path.name) == 64:
                stat = path.stat()
                out[path.name] = (stat.st_ino, stat.st_mtime_ns)
        return out


def setup(nodes: dict[str, Node]) -> str:
    for node in nodes.values():
        node.start()
    names = list(nodes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            nodes[a].call("connect", peer=nodes[b].addr)
    r1 = nodes["r1"]
    group = r1.call("group.create", name="bench")["group_id"]
    for name, role in (("r2", "ratifier"), ("r3", "ratifier"), ("m1", "user"), ("m2", "user")):
        r1.call("group.invite", group=group, peer=nodes[name].peer_id, role=role)
        nodes[name].call("group.join", group=group, via=r1.addr)
    return str(group)


def perf(nodes: dict[str, Node]) -> float:
    """MiB/s of ``p2pchat perf`` downloading 256 MiB from r1 to m2."""
    args = [sys.executable, "-m", "p2pchat", "--data-dir", str(nodes["m2"].dir), "perf"]
    args += [nodes["r1"].addr, "--upload", "0", "--download", str(256 * MIB), "--json"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, check=False)
    if done.returncode != 0:
        log(f"perf failed: {done.stderr.strip()}")
        return float("nan")
    for line in done.stdout.splitlines():
        record = json.loads(line)
        if record.get("type") == "final" and record.get("timeSeconds"):
            return float(record["downloadBytes"]) / float(record["timeSeconds"]) / MIB
    log(f"perf gave no final record: {done.stdout[-200:]}")
    return float("nan")


def make_file(root: Path, size: int) -> Path:
    path = root / f"file-{size // MIB}MiB.bin"
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, 4 * MIB)
            fh.write(os.urandom(n))
            left -= n
    return path


def send_one(
    nodes: dict[str, Node], group: str, size: int, root: Path, kill_at: float | None
) -> dict[str, Any]:
    path = make_file(root, size)
    sender = nodes["m1"]
    receivers = [n for n in nodes.values() if n is not sender]
    before = {n.name: set(n.blob_files()) for n in receivers}
    times: dict[str, float] = {}
    sealed: list[float] = []
    answer: dict[str, Any] = {}

    def on_event(event: dict[str, Any]) -> None:
        done = event.get("kind") == "progress" and event.get("done") == event.get("total")
        if done and not sealed:
            sealed.append(time.monotonic())

    def sending() -> None:
        answer.update(client.stream(sender.dir, "send.file", on_event, group=group, path=str(path)))
        times["ratified"] = time.monotonic()

    t0 = time.monotonic()
    thread = threading.Thread(target=sending)
    thread.start()
    killed: dict[str, Any] = {}
    chunks = -(-size // (256 * 1024))
    deadline = t0 + max(300.0, size / MIB * 2)
    root_hex = ""
    while time.monotonic() < deadline:
        if not root_hex:
            markers = [p.name for p in sender.blob_dir().glob("*/*.complete")]
            new = [m for m in markers if m[:-9] not in ALL_ROOTS]
            if new:
                root_hex = new[0][: -len(".complete")]
                ALL_ROOTS.add(root_hex)
        if root_hex:
            for node in receivers:
                if node.name not in times and node.complete(root_hex):
                    times[node.name] = time.monotonic()
        m2 = nodes["m2"]
        if kill_at is not None and not killed and "m2" not in times:
            held = len(set(m2.blob_files()) - before["m2"])
            if held >= kill_at * chunks:
                m2.kill()
                killed = {"at": time.monotonic() - t0, "files": m2.blob_files(), "held": held}
                log(f"  killed m2 holding {held} of {chunks} chunks; restarting it")
                m2.start()
                for other in nodes.values():
                    if other is not m2:
                        m2.call("connect", peer=other.addr)
        if "ratified" in times and all(n.name in times for n in receivers):
            break
        time.sleep(0.05)
    thread.join(timeout=STEP_LIMIT)
    result: dict[str, Any] = {
        "size_mib": size // MIB,
        "status": answer.get("status"),
        "sealed_s": (sealed[0] - t0) if sealed else None,
        "ratified_s": times.get("ratified", float("nan")) - t0,
        "held_s": {n.name: times.get(n.name, float("nan")) - t0 for n in receivers},
    }
    rates = {}
    for node in receivers:
        start = (sealed[0] if sealed else t0) if node.name.startswith("r") else times["ratified"]
        if node.name in times:
            rates[node.name] = (size / MIB) / max(1e-9, times[node.name] - start)
    result["mib_s"] = rates
    if killed:
        m2 = nodes["m2"]
        after = m2.blob_files()
        unchanged = sum(1 for name, ident in killed["files"].items() if after.get(name) == ident)
        text = m2.log_path.read_text(errors="replace")
        found = re.findall(r"complete: (\d+) of its (\d+) chunks fetched now, (\d+) held", text)
        result["kill"] = {
            "killed_at_s": killed["at"],
            "blob_files_at_kill": len(killed["files"]),
            "unchanged_after": unchanged,
            "restarted_node_log": found[-1] if found else None,
        }
    path.unlink()
    return result


ALL_ROOTS: set[str] = set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="64,1024", help="MiB, comma-separated")
    parser.add_argument("--kill-at", type=float, default=0.5, help="0 to skip the kill test")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs")
    args = parser.parse_args()
    sizes = [int(s) * MIB for s in args.sizes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="bench-artifacts-"))
    nodes = {name: Node(root, name) for name in NAMES}
    try:
        log(f"data dirs under {root}")
        group = setup(nodes)
        log("group of 3 ratifiers (quorum 2) and 2 users, all connected")
        ceiling = perf(nodes)
        log(f"p2pchat perf r1 -> m2, 256 MiB download: {ceiling:.1f} MiB/s (the ceiling)")
        for size in sizes:
            kill = args.kill_at if (args.kill_at > 0 and size == max(sizes)) else None
            result = send_one(nodes, group, size, root, kill)
            log(f"-- {result['size_mib']} MiB from m1: {result['status']}")
            log(f"  sealed at m1 after {result['sealed_s']:.2f} s")
            log(f"  ratified (quorum holds every chunk) after {result['ratified_s']:.2f} s")
            for name, held in result["held_s"].items():
                rate = result["mib_s"].get(name, float("nan"))
                share = rate / ceiling * 100 if ceiling == ceiling else float("nan")
                log(f"  held by {name} after {held:.2f} s: {rate:.1f} MiB/s ({share:.0f}% of perf)")
            if "kill" in result:
                log(f"  kill/restart of m2: {json.dumps(result['kill'])}")
            rss = {name: round(node.peak_rss_mib(), 1) for name, node in nodes.items()}
            log(f"  peak RSS (VmHWM, MiB) so far: {rss}")
    finally:
        for node in nodes.values():
            node.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
