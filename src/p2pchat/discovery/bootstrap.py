"""The bootstrap list and the known-peers file: how a node finds peers without discovery.

Theory of operation
-------------------
A **bootstrap entry** is a multiaddr that names its peer (``.../p2p/<id>``), or a
``/dnsaddr/<domain>[/p2p/<id>]`` name (specs/cli.md, "Bootstrap"). :func:`run_bootstrap` runs
one task per bootstrap peer in the caller's nursery: it dials the peer, waits for the connection
to close, and dials again, sleeping between attempts with exponential backoff and jitter
(:class:`Backoff`). A ``/dnsaddr`` entry is first resolved through DNS TXT records
(``_dnsaddr.<domain>``, each ``dnsaddr=<multiaddr>``, nested ``/dnsaddr`` followed up to
:data:`MAX_DNSADDR_DEPTH` levels), retrying with the same backoff until it yields addresses;
every peer it names is then kept connected like a literal entry. DNS is asked only for the
names a user configured; the lookup is a parameter, so tests resolve through a fake.

**Known peers** (:class:`KnownPeers`) are the peers this node has been connected to, with the
addresses they announced, kept in ``peers.json`` in the data dir. A node loads them into its
peer store at start and dials them once, so after a restart it finds its group's members again
without any discovery; the members it reaches sync with it (anti-entropy) at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs
import trio

from ..errors import DecodeError, P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr, MultiaddrError
from ..net.peerstore import PERMANENT

if TYPE_CHECKING:
    from ..net.host import Host

logger = logging.getLogger(__name__)

# specs/cli.md "Bootstrap": the TXT record prefix of multiaddr/protocols/DNSADDR.md.
DNSADDR_PREFIX: Final = "dnsaddr="
DNSADDR_LABEL: Final = "_dnsaddr."
#: Nested ``/dnsaddr`` records are followed this deep, and no further.
MAX_DNSADDR_DEPTH: Final = 4
#: An entry resolves to at most this many addresses (the rest are ignored).
MAX_RESOLVED_ADDRS: Final = 64
#: Seconds one DNS lookup may take.
DNS_TIMEOUT: Final = 5.0

#: specs/cli.md "Known peers": the file's format version and bounds.
KNOWN_PEERS_VERSION: Final = 1
MAX_KNOWN_PEERS: Final = 256
#: Peers in none of our groups kept by a running node (most recently seen first): a crowd of
#: fresh identities can push out only each other, never a group member.
MAX_KNOWN_STRANGERS: Final = 64
MAX_KNOWN_ADDRS: Final = 8
MAX_KNOWN_PEERS_FILE: Final = 1024 * 1024

TxtLookup = Callable[[str], Awaitable[list[str]]]


class BootstrapError(P2PChatError):
    """A bootstrap entry is malformed, or a ``/dnsaddr`` name cannot be resolved."""


# -- entries ---------------------------------------------------------------------------------


def parse_bootstrap_entry(text: str) -> Multiaddr:
    """A bootstrap entry from its text: a multiaddr ending in ``/p2p/<id>``, or ``/dnsaddr/...``.

    Raises:
        BootstrapError: not a multiaddr, or one that names no peer and is not a ``/dnsaddr``.
    """
    try:
        addr = Multiaddr.from_string(text)
    except MultiaddrError as exc:
        raise BootstrapError(f"invalid bootstrap address {text!r}: {exc}") from None
    if is_dnsaddr(addr):
        return addr
    try:
        peer = addr.peer_id
    except DecodeError as exc:
        raise BootstrapError(f"invalid peer id in bootstrap address {text!r}: {exc}") from None
    if peer is None:
        raise BootstrapError(f"a bootstrap address must end in /p2p/<peer id>: {text}")
    return addr


def is_dnsaddr(addr: Multiaddr) -> bool:
    """True if ``addr`` starts with ``/dnsaddr``."""
    return len(addr) > 0 and addr.components[0].protocol.name == "dnsaddr"


def dnsaddr_records(txts: Iterable[str], suffix: Multiaddr | None = None) -> list[Multiaddr]:
    """The multiaddrs in the TXT records of a ``_dnsaddr`` name.

    Records without the ``dnsaddr=`` prefix, and values that do not parse, are skipped. With
    ``suffix`` (what followed ``/dnsaddr/<domain>`` in the entry, e.g. ``/p2p/<id>``), only
    addresses ending in it are kept.
    """
    found: list[Multiaddr] = []
    tail = suffix.components if suffix is not None else ()
    for txt in txts:
        if not txt.startswith(DNSADDR_PREFIX):
            continue
        try:
            addr = Multiaddr.from_string(txt[len(DNSADDR_PREFIX) :])
        except MultiaddrError:
            logger.debug("ignoring a malformed dnsaddr record")
            continue
        if tail and addr.components[-len(tail) :] != tail:
            continue
        if addr not in found:
            found.append(addr)
    return found


async def resolve_dnsaddr(
    addr: Multiaddr, lookup: TxtLookup, *, depth: int = MAX_DNSADDR_DEPTH
) -> list[Multiaddr]:
    """Resolve a ``/dnsaddr`` multiaddr to dialable multiaddrs (at most 64).

    Any other multiaddr is returned as it is.

    Raises:
        BootstrapError: a lookup failed (the name does not exist counts as no records).
    """
    if not is_dnsaddr(addr):
        return [addr]
    domain = addr.components[0].value
    suffix = Multiaddr(addr.components[1:]) if len(addr) > 1 else None
    records = dnsaddr_records(await lookup(DNSADDR_LABEL + str(domain)), suffix)
    resolved: list[Multiaddr] = []
    for record in records:
        if is_dnsaddr(record):
            if depth <= 1:
                logger.info("dnsaddr %s nests too deep; ignoring %s", domain, record)
                continue
            more = await resolve_dnsaddr(record, lookup, depth=depth - 1)
        else:
            more = [record]
        resolved.extend(a for a in more if a not in resolved)
        if len(resolved) >= MAX_RESOLVED_ADDRS:
            break
    return resolved[:MAX_RESOLVED_ADDRS]


async def dns_txt_lookup(name: str) -> list[str]:
    """The TXT records of ``name`` through the system's resolver (dnspython, in a worker
    thread); an empty list if the name or the records do not exist.

    Raises:
        BootstrapError: the lookup failed or timed out.
    """
    import dns.exception
    import dns.resolver

    def query() -> list[str]:
        try:
            answer = dns.resolver.resolve(name, "TXT", lifetime=DNS_TIMEOUT)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise BootstrapError(f"cannot resolve {name}: {exc}") from None
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]

    return await trio.to_thread.run_sync(query, abandon_on_cancel=True)


# -- backoff ---------------------------------------------------------------------------------


@attrs.frozen
class BackoffPolicy:
    """Exponential backoff with jitter: the n-th delay (from 0) is drawn uniformly from
    ``[d * (1 - jitter), d]`` where ``d = min(maximum, initial * multiplier**n)``.

    A connection that stayed up ``stable_after`` seconds resets the count.
    """

    initial: float = 1.0
    maximum: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.5
    stable_after: float = 10.0

    def __attrs_post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum and self.multiplier >= 1):
            raise ValueError("backoff needs 0 < initial <= maximum and multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be in [0, 1]")


class Backoff:
    """The delays of one retry loop (sans-IO: it only computes them)."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._rng = rng if rng is not None else random.Random()
        self.attempts = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        p = self.policy
        base = min(p.maximum, p.initial * p.multiplier ** min(self.attempts, 64))
        self.attempts += 1
        return base * (1 - p.jitter * self._rng.random())

    def reset(self) -> None:
        """Back to the initial delay (after a success)."""
        self.attempts = 0


# -- keeping connections ---------------------------------------------------------------------


class Connection(Protocol):
    """What :func:`keep_connected` needs of a connection."""

    async def wait_closed(self) -> None: ...


async def keep_connected(
    dial: Callable[[], Awaitable[Connection]], backoff: Backoff, *, label: str
) -> None:
    """Dial, wait for the connection to close, dial again; forever (until cancelled).

    A failed dial (any :class:`P2PChatError`) waits the next backoff delay; a connection that
    closes waits one too, counted from zero again if it had stayed up long enough.
    """
    while True:
        try:
            conn = await dial()
        except P2PChatError as exc:
            delay = backoff.next_delay()
            logger.info("bootstrap peer %s: %s; next try in %.1f s", label, exc, delay)
            await trio.sleep(delay)
            continue
        logger.info("connected to bootstrap peer %s", label)
        since = trio.current_time()
        await conn.wait_closed()
        if trio.current_time() - since >= backoff.policy.stable_after:
            backoff.reset()
        delay = backoff.next_delay()
        logger.info("bootstrap peer %s disconnected; redialing in %.1f s", label, delay)
        await trio.sleep(delay)


def group_by_peer(addrs: Iterable[Multiaddr]) -> dict[PeerID, list[Multiaddr]]:
    """Addresses that end in ``/p2p/<id>``, grouped by peer (others are skipped)."""
    peers: dict[PeerID, list[Multiaddr]] = {}
    for addr in addrs:
        try:
            peer = addr.peer_id
        except DecodeError:
            continue
        if peer is not None:
            peers.setdefault(peer, []).append(addr.without_peer_id())
    return peers


async def run_bootstrap(
    host: Host,
    entries: Sequence[Multiaddr],
    *,
    lookup: TxtLookup = dns_txt_lookup,
    policy: BackoffPolicy | None = None,
    rng: random.Random | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep ``host`` connected to every bootstrap peer (until cancelled).

    Entries that name this host itself are skipped, so one list can serve a whole cluster.
    """
    policy = policy if policy is not None else BackoffPolicy()
    rng = rng if rng is not None else random.Random()

    async def keep_peer(peer: PeerID, addrs: Sequence[Multiaddr]) -> None:
        host.peer_store.add_addrs(peer, addrs, PERMANENT, trio.current_time())

        async def dial() -> Connection:
            return await host.connect(peer)

        await keep_connected(dial, Backoff(policy, rng), label=str(peer))

    async def keep_dnsaddr(entry: Multiaddr, nursery: trio.Nursery) -> None:
        backoff = Backoff(policy, rng)
        while True:
            try:
                addrs = await resolve_dnsaddr(entry, lookup)
            except BootstrapError as exc:
                addrs, reason = [], str(exc)
            else:
                reason = "no dnsaddr records"
            peers = group_by_peer(addrs)
            peers.pop(host.peer_id, None)
            if peers:
                break
            delay = backoff.next_delay()
            logger.warning("bootstrap %s: %s; next try in %.1f s", entry, reason, delay)
            await trio.sleep(delay)
        logger.info("bootstrap %s resolved to %d peer(s)", entry, len(peers))
        for peer, peer_addrs in peers.items():
            nursery.start_soon(keep_peer, peer, peer_addrs)

    literal = group_by_peer(e for e in entries if not is_dnsaddr(e))
    literal.pop(host.peer_id, None)
    async with trio.open_nursery() as nursery:
        for peer, addrs in literal.items():
            nursery.start_soon(keep_peer, peer, addrs)
        for entry in entries:
            if is_dnsaddr(entry):
                nursery.start_soon(keep_dnsaddr, entry, nursery)
        task_status.started()


# -- known peers -----------------------------------------------------------------------------


@attrs.frozen
class KnownPeer:
    """A peer this node was connected to, the addresses it had, and when (ms since the epoch)."""

    peer_id: PeerID
    addrs: tuple[Multiaddr, ...]
    last_seen: int


class KnownPeers:
    """The known-peers file (``peers.json`` in the data dir): at most 256 peers, most recently
    seen first, 8 addresses each. It is a cache: a file that cannot be read is logged and
    replaced at the next save, never a reason not to start.

    Once told who the members of our groups are (:meth:`set_members`), it lists them first and
    keeps at most ``max_strangers`` other peers, so that peers outside our groups, however many
    and however recent, never push a member out.
    """

    def __init__(
        self,
        path: Path,
        peers: Iterable[KnownPeer] = (),
        *,
        max_strangers: int = MAX_KNOWN_PEERS,
    ) -> None:
        self.path = path
        self._peers: dict[PeerID, KnownPeer] = {p.peer_id: p for p in peers}
        self._max_strangers = max_strangers
        # None until set_members: then every peer counts alike (most recent kept).
        self._members: frozenset[PeerID] | None = None

    @classmethod
    def load(cls, path: Path, *, max_strangers: int = MAX_KNOWN_PEERS) -> KnownPeers:
        """Read ``path``; a missing or unreadable file gives an empty list (logged)."""
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_KNOWN_PEERS_FILE + 1)
        except FileNotFoundError:
            return cls(path, max_strangers=max_strangers)
        except OSError as exc:
            logger.warning("cannot read %s: %s; starting without known peers", path, exc.strerror)
            return cls(path, max_strangers=max_strangers)
        if len(raw) > MAX_KNOWN_PEERS_FILE:
            logger.warning("ignoring %s: larger than %d bytes", path, MAX_KNOWN_PEERS_FILE)
            return cls(path, max_strangers=max_strangers)
        try:
            return cls(path, _decode_known(json.loads(raw)), max_strangers=max_strangers)
        except (ValueError, TypeError, KeyError, DecodeError) as exc:
            logger.warning("ignoring malformed %s: %s", path, exc)
            return cls(path, max_strangers=max_strangers)

    def peers(self) -> list[KnownPeer]:
        """Every known peer: the members of our groups first (once :meth:`set_members` named
        them), then the others; each part most recently seen first."""
        members = self._members or frozenset()
        return sorted(
            self._peers.values(),
            key=lambda p: (p.peer_id not in members, -p.last_seen, str(p.peer_id)),
        )

    def set_members(self, members: Iterable[PeerID]) -> None:
        """The members of our groups, from now on: kept before any other peer (the others are
        trimmed to ``max_strangers`` at once)."""
        self._members = frozenset(members)
        self._trim()

    def _trim(self) -> None:
        """Apply the bounds: members first, then at most ``max_strangers`` others (none of
        which count before members are named), 256 in all."""
        ordered = self.peers()
        if self._members is not None:
            members = [p for p in ordered if p.peer_id in self._members]
            strangers = [p for p in ordered if p.peer_id not in self._members]
            ordered = members + strangers[: self._max_strangers]
        kept = ordered[:MAX_KNOWN_PEERS]
        if len(kept) != len(self._peers):
            self._peers = {p.peer_id: p for p in kept}

    def get(self, peer: PeerID) -> KnownPeer | None:
        """What is known of ``peer``."""
        return self._peers.get(peer)

    def update(self, peer: PeerID, addrs: Iterable[Multiaddr], now_ms: int) -> None:
        """Record that ``peer`` was seen now at ``addrs`` (kept: the newest 8, without
        ``/p2p``); with no address, the previous ones are kept."""
        fresh = [a.without_peer_id() for a in addrs]
        old = self._peers.get(peer)
        merged = list(dict.fromkeys([*fresh, *(old.addrs if old else ())]))[:MAX_KNOWN_ADDRS]
        if not merged:
            return
        self._peers[peer] = KnownPeer(peer, tuple(merged), now_ms)
        self._trim()

    def save(self) -> None:
        """Write the file atomically (mode 0600: a temporary file renamed into place).

        Raises:
            OSError: the file cannot be written.
        """
        data = json.dumps(
            {
                "version": KNOWN_PEERS_VERSION,
                "peers": [
                    {
                        "peer_id": str(p.peer_id),
                        "addrs": [str(a) for a in p.addrs],
                        "last_seen": p.last_seen,
                    }
                    for p in self.peers()
                ],
            },
            indent=1,
        ).encode()
        fd, tmp = tempfile.mkstemp(prefix=".peers-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _decode_known(value: Any) -> list[KnownPeer]:
    if not isinstance(value, dict) or value.get("version") != KNOWN_PEERS_VERSION:
        raise ValueError(f"not a version {KNOWN_PEERS_VERSION} known-peers file")
    peers = value["peers"]
    if not isinstance(peers, list):
        raise TypeError("peers must be a list")
    out: list[KnownPeer] = []
    for item in peers[:MAX_KNOWN_PEERS]:
        addrs = tuple(Multiaddr.from_string(a) for a in item["addrs"][:MAX_KNOWN_ADDRS])
        last_seen = item["last_seen"]
        if not isinstance(last_seen, int):
            raise TypeError("last_seen must be an integer")
        out.append(KnownPeer(PeerID.from_string(item["peer_id"]), addrs, last_seen))
    return out
