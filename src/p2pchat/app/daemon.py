"""The running node: a Host, the store, the chat node, bootstrap, mDNS and the control socket.

Theory of operation
-------------------
:func:`open_daemon` brings a node up in an order that makes every failure early and clear:

1. the identity is loaded (or created) from the data dir;
2. the store is opened, which **locks the data dir**: a second node on it fails here, before it
   binds a port or touches the control socket;
3. the Host listens; the known peers (``peers.json``) go into its peer store, so the chat node,
   which dials its groups' members at start, finds them without discovery;
4. the chat node starts (serving ``/p2pchat/1.0.0``, resuming its outbox, syncing with members
   as they connect); perf is served if enabled;
5. in the daemon's nursery: the bootstrap peers are kept connected, mDNS runs if enabled, the
   known peers are dialed once, the known-peers file is saved a moment after each new
   connection (once identify has told us the peer's listen addresses), and the control socket
   serves the ``p2pchat`` commands (:meth:`Daemon.handle`).

Leaving the ``async with`` block (``p2pchat node`` leaves it on SIGINT/SIGTERM or a ``stop``
request) saves the known peers, removes the control socket, stops the chat node, closes every
connection and releases the store, in the reverse order.

The operations of the control socket (specs/control.md) are methods ``_op_<name>`` found by
name; arguments are checked here, and every refusal is a one-line :class:`DaemonError` (or an
error of the layer that refused) that the client prints as it is.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from .. import __version__
from ..chat.core import cbor
from ..chat.core.crypto import MAX_PLAINTEXT
from ..chat.core.packet import Certificate
from ..chat.core.roster import Role
from ..chat.node import ChatConfig, ChatMessage, ChatNode, PendingError, open_chat_node
from ..chat.store import ChatStore, open_store
from ..discovery.bootstrap import BackoffPolicy, KnownPeers, run_bootstrap
from ..errors import DecodeError, P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr, tcp_host_port
from ..net.events import ConnectionClosed
from ..net.host import Host, HostConfig, open_host
from ..net.ping import open_ping
from .config import Config
from .control import Emit, serve_control
from .datadir import control_socket_path, load_or_create_identity, peers_path

logger = logging.getLogger(__name__)

#: How long addresses from ``peers.json`` stay in the peer store without being confirmed.
KNOWN_PEER_TTL: Final = 24 * 3600.0
#: Known peers dialed at start (most recently seen first), and how many at once.
DIAL_KNOWN_PEERS: Final = 32
DIAL_KNOWN_CONCURRENCY: Final = 8
#: Wait this long after a new connection before saving the known peers (identify lands first).
SAVE_PEERS_DELAY: Final = 1.0
#: The message types ``send`` accepts (specs/chat.md §4; "roster" is the owner's, by invite).
SEND_TYPES: Final = ("text", "markdown", "image", "file")
MAX_MIME: Final = 128
HISTORY_DEFAULT_LIMIT: Final = 1000
MIN_PREFIX: Final = 4


class DaemonError(P2PChatError):
    """A request to the node cannot be done; the message says why in one line."""


@attrs.frozen
class NodeOptions:
    """How to run a node: the configuration file's values after command-line overrides."""

    data_dir: Path
    listen: tuple[Multiaddr, ...]
    bootstrap: tuple[Multiaddr, ...] = ()
    mdns: bool = False
    mdns_interface: str = "lo"
    perf: bool = False
    chat: ChatConfig = attrs.Factory(ChatConfig)
    #: Serve the control socket (the demo's in-process nodes do too).
    control: bool = True
    bootstrap_backoff: BackoffPolicy = attrs.Factory(BackoffPolicy)

    @classmethod
    def from_config(cls, data_dir: Path, config: Config) -> NodeOptions:
        """Options from a configuration file's values."""
        return cls(
            data_dir=data_dir,
            listen=config.listen,
            bootstrap=config.bootstrap,
            mdns=config.mdns,
            mdns_interface=config.mdns_interface,
            perf=config.perf,
            chat=ChatConfig(send_timeout=config.send_timeout, query_timeout=config.query_timeout),
        )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dialable(addr: Multiaddr) -> bool:
    """A TCP address someone else could dial (not an unspecified ``0.0.0.0`` / ``::``)."""
    target = tcp_host_port(addr)
    return target is not None and target.host not in ("0.0.0.0", "::") and target.port != 0


# -- arguments -------------------------------------------------------------------------------


def _str_arg(request: dict[str, Any], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str) or not value:
        raise DaemonError(f"missing argument {name!r}")
    return value


def parse_peer(text: str) -> PeerID | Multiaddr:
    """A peer ID, or a multiaddr ending in ``/p2p/<id>``.

    Raises:
        DaemonError: neither.
    """
    if text.startswith("/"):
        try:
            addr = Multiaddr.from_string(text)
            peer = addr.peer_id
        except DecodeError as exc:  # MultiaddrError is one
            raise DaemonError(f"invalid multiaddr {text!r}: {exc}") from None
        if peer is None:
            raise DaemonError(f"the address must end in /p2p/<peer id>: {text}")
        return addr
    try:
        return PeerID.from_string(text)
    except DecodeError:
        raise DaemonError(f"not a peer id or a multiaddr: {text!r}") from None


def _peer_of(target: PeerID | Multiaddr) -> PeerID:
    if isinstance(target, PeerID):
        return target
    peer = target.peer_id
    assert peer is not None  # parse_peer checked
    return peer


def message_json(message: ChatMessage, *, me: PeerID, data: bool = False) -> dict[str, Any]:
    """The JSON view of a message (specs/control.md "Messages"); ``data`` adds the content of a
    non-text message as Base64."""
    content = message.content
    out: dict[str, Any] = {
        "group_id": message.group_id.hex(),
        "message_hash": message.message_hash.hex(),
        "author": str(message.author),
        "from_me": message.author == me,
        "type": message.message_type,
        "mime": message.mime,
        "time_stamp": message.time_stamp,
        "epoch": message.epoch,
        "ref_hash": message.ref_hash.hex() if message.ref_hash is not None else None,
        "ratified": message.ratified,
        "readable": content is not None,
        "size": len(content) if content is not None else None,
    }
    if content is None:
        return out
    if message.message_type in ("text", "markdown"):
        out["text"] = message.text
    elif message.message_type == "roster":
        out["roster"] = _roster_summary(content)
    elif data:
        out["data_b64"] = base64.b64encode(content).decode("ascii")
    return out


def _roster_summary(content: bytes) -> dict[str, Any] | None:
    """Epoch and members of a roster message's (plaintext) artifact, for display."""
    try:
        value = cbor.loads(content, max_size=len(content))
        roster = value["roster"]
        members = [
            {"peer_id": str(PeerID.from_bytes(m["peer"])), "role": str(m["role"])}
            for m in roster["members"]
        ]
        return {"epoch": int(roster["epoch"]), "quorum": int(roster["quorum"]), "members": members}
    except (DecodeError, KeyError, TypeError, ValueError):
        return None


class Daemon:
    """A running node. Made by :func:`open_daemon`."""

    def __init__(
        self,
        options: NodeOptions,
        host: Host,
        store: ChatStore,
        chat: ChatNode,
        known: KnownPeers,
        nursery: trio.Nursery,
    ) -> None:
        self.options = options
        self.host = host
        self.store = store
        self.chat = chat
        self.known = known
        self._nursery = nursery
        self._peers_changed = trio.Event()
        #: Set by the ``stop`` operation; ``p2pchat node`` waits on it beside its signals.
        self.stop_requested = trio.Event()
        self.mdns_running = False

    @property
    def peer_id(self) -> PeerID:
        """This node's peer ID."""
        return self.host.peer_id

    # -- known peers ---------------------------------------------------------------------------

    async def _watch_connections(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with self.host.connection_events(include_existing=True) as events:
            task_status.started()
            async for event in events:
                if not isinstance(event, ConnectionClosed):
                    self._peers_changed.set()

    def remember_peers(self) -> None:
        """Record every connected peer and its addresses in the known peers (in memory)."""
        now = trio.current_time()
        for peer in self.host.connected_peers():
            addrs = [a for a in self.host.peer_store.addrs(peer, now) if _dialable(a)]
            conn = self.host.connection(peer)
            if conn is not None and conn.is_client and conn.remote_addr is not None:
                addrs.insert(0, conn.remote_addr)
            self.known.update(peer, addrs, _now_ms())

    async def save_peers(self) -> None:
        """Write the known peers to ``peers.json`` (errors are logged)."""
        self.remember_peers()
        try:
            await trio.to_thread.run_sync(self.known.save)
        except OSError as exc:
            logger.warning("cannot save %s: %s", self.known.path, exc.strerror)

    async def _save_peers_loop(self) -> None:
        while True:
            await self._peers_changed.wait()
            self._peers_changed = trio.Event()
            await trio.sleep(SAVE_PEERS_DELAY)
            await self.save_peers()

    async def _dial_known(self) -> None:
        """Dial the most recently seen known peers once each (the chat node and bootstrap take
        it from there)."""
        limiter = trio.CapacityLimiter(DIAL_KNOWN_CONCURRENCY)

        async def one(peer: PeerID) -> None:
            async with limiter:
                try:
                    await self.host.connect(peer)
                except (P2PChatError, ValueError) as exc:
                    logger.info("known peer %s not reachable: %s", peer, exc)

        async with trio.open_nursery() as nursery:
            for known in self.known.peers()[:DIAL_KNOWN_PEERS]:
                if known.peer_id != self.peer_id:
                    nursery.start_soon(one, known.peer_id)

    # -- control operations --------------------------------------------------------------------

    async def handle(self, request: dict[str, Any], emit: Emit) -> Any:
        """Run one control request (specs/control.md).

        Raises:
            DaemonError: an unknown operation or a bad argument.
            P2PChatError: the operation failed (the message says why).
        """
        op = request.get("op")
        if not isinstance(op, str):
            raise DaemonError("a request needs an 'op'")
        method: Callable[[dict[str, Any], Emit], Awaitable[Any]] | None = getattr(
            self, "_op_" + op.replace(".", "_"), None
        )
        if method is None:
            raise DaemonError(f"unknown operation {op!r}")
        return await method(request, emit)

    def resolve_group(self, text: str, *, member: bool = True) -> bytes:
        """A group id from its hex id, a unique hex prefix (4+ digits), a unique name, or a unique
        prefix of a name (case-insensitive).

        Raises:
            DaemonError: no such group, or several match.
        """
        text = text.strip()
        groups = self.chat.groups()
        lowered = text.lower()
        if len(lowered) == 64:
            try:
                group_id = bytes.fromhex(lowered)
            except ValueError:
                pass
            else:
                if not member or group_id in groups:
                    return group_id
                raise DaemonError(f"not a member of group {lowered[:16]}")
        matches: list[bytes] = []
        if len(lowered) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in lowered):
            matches = [g for g in groups if g.hex().startswith(lowered)]
        if not matches:
            matches = [g for g in groups if self.chat.group_state(g).name == text]
        if not matches:
            folded = text.casefold()
            matches = [
                g for g in groups if self.chat.group_state(g).name.casefold().startswith(folded)
            ]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise DaemonError(f"{text!r} names {len(matches)} groups; use more of the group id")
        raise DaemonError(f"no group {text!r} on this node (see: p2pchat group list)")

    def _target_arg(self, request: dict[str, Any], name: str) -> PeerID | Multiaddr:
        """A peer argument; a bare peer ID must be connected or have a known address.

        Raises:
            DaemonError: malformed, or a peer ID this node has no address for.
        """
        target = parse_peer(_str_arg(request, name))
        if (
            isinstance(target, PeerID)
            and target != self.peer_id
            and self.host.connection(target) is None
            and not self.host.peer_store.addrs(target, trio.current_time())
        ):
            raise DaemonError(
                f"this node knows no address for {target}: give its multiaddr "
                f"(/ip4/<address>/tcp/<port>/p2p/{target}), or connect to it first"
            )
        return target

    def _group_arg(self, request: dict[str, Any]) -> bytes:
        return self.resolve_group(_str_arg(request, "group"))

    async def _op_status(self, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
        return {
            "peer_id": str(self.peer_id),
            "cid": self.peer_id.to_cid(),
            "addrs": [str(a) for a in self.host.addrs],
            "data_dir": str(self.options.data_dir),
            "pid": os.getpid(),
            "version": __version__,
            "connected": len(self.host.connected_peers()),
            "groups": len(self.chat.groups()),
            "bootstrap": [str(a) for a in self.options.bootstrap],
            "mdns": self.mdns_running,
            "perf": self.options.perf,
        }

    async def _op_stop(self, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
        self.stop_requested.set()
        return {}

    async def _op_peers(self, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
        connected = []
        for peer in sorted(self.host.connected_peers(), key=str):
            conn = self.host.connection(peer)
            record = self.host.peer_store.get(peer)
            connected.append(
                {
                    "peer_id": str(peer),
                    "addr": str(conn.remote_addr) if conn and conn.remote_addr else None,
                    "direction": "outbound" if conn and conn.is_client else "inbound",
                    "agent": record.agent_version if record else "",
                }
            )
        live = set(self.host.connected_peers())
        known = [
            {
                "peer_id": str(k.peer_id),
                "addrs": [str(a) for a in k.addrs],
                "last_seen": k.last_seen,
            }
            for k in self.known.peers()
            if k.peer_id not in live
        ]
        return {"connected": connected, "known": known}

    async def _op_connect(self, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
        target = self._target_arg(request, "peer")
        conn = await self.host.connect(target)
        self._peers_changed.set()
        return {"peer_id": str(conn.remote_peer)}

    async def _op_ping(self, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
        target = self._target_arg(request, "peer")
        timeout = request.get("timeout", 10.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise DaemonError("timeout must be a positive number of seconds")
        with trio.fail_after(timeout * 3):
            async with open_ping(self.host, target, echo_timeout=float(timeout)) as pinger:
                rtt = await pinger.ping()
        return {"peer_id": str(_peer_of(target)), "ms": rtt * 1e3}

    async def _op_group_create(self, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
        name = _str_arg(request, "name")
        quorum = request.get("quorum")
        if quorum is not None and (not isinstance(quorum, int) or isinstance(quorum, bool)):
            raise DaemonError("quorum must be a whole number")
        history = request.get("history", "all")
        if history not in ("all", "since_join"):
            raise DaemonError("history must be 'all' or 'since_join'")
        group_id = await self.chat.create_group(name, quorum=quorum, history=history)
        return {"group_id": group_id.hex(), "name": name}

    async def _op_group_invite(self, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
        group_id = self._group_arg(request)
        target = self._target_arg(request, "peer")
        role_text = request.get("role", "user")
        try:
            role = Role(role_text)
        except ValueError:
            raise DaemonError(
                f"role must be one of ratifier, user, viewer (not {role_text!r})"
            ) from None
        await self.chat.invite(group_id, target, role)
        state = self.chat.group_state(group_id)
        return {
            "group_id": group_id.hex(),
            "peer_id": str(_peer_of(target)),
            "role": role.value,
            "epoch": state.current_epoch,
            "owner_addrs": [str(a) for a in self.host.addrs],
        }

    async def _op_group_join(self, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
        text = _str_arg(request, "group").lower()
        try:
            group_id = bytes.fromhex(text)
        except ValueError:
            group_id = b""
        if len(group_id) != 32:
            raise DaemonError(f"a group id is 64 hex digits: {text!r}")
        via = self._target_arg(request, "via")
        await self.chat.join(group_id, via)
        state = self.chat.group_state(group_id)
        return {"group_id": group_id.hex(), "name": state.name, "epoch": state.current_epoch}

    async def _op_group_remove(self, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
        group_id = self._group_arg(request)
        peer = _peer_of(parse_peer(_str_arg(request, "peer")))
        if self.chat.group_state(group_id).current_roster.member(peer) is None:
            raise DaemonError(f"{peer} is not a member of this group")
        await self.chat.remove(group_id, peer)
        return {"group_id": group_id.hex(), "peer_id": str(peer)}

    def _group_summary(self, group_id: bytes) -> dict[str, Any]:
        state = self.chat.group_state(group_id)
        roster = state.current_roster
        role = roster.role_of(self.peer_id)
        return {
            "group_id": group_id.hex(),
            "name": state.name,
            "owner": str(state.owner),
            "role": role.value if role is not None else None,
            "epoch": state.current_epoch,
            "members": len(roster.members),
            "ratifiers": len(roster.ratifiers),
            "quorum": roster.quorum,
            "history": roster.history,
        }

    async def _op_group_list(self, request: dict[str, Any], emit: Emit) -> list[dict[str, Any]]:
        summaries = [self._group_summary(g) for g in self.chat.groups()]
        return sorted(summaries, key=lambda s: (s["name"], s["group_id"]))

    async def _op_group_roster(self, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
        group_id = self._group_arg(request)
        state = self.chat.group_state(group_id)
        connected = set(self.host.connected_peers())
        summary = self._group_summary(group_id)
        summary["member_list"] = [
            {
                "peer_id": str(m.peer),
                "role": m.role.value,
                "owner": m.peer == state.owner,
                "me": m.peer == self.peer_id,
                "connected": m.peer in connected,
            }
            for m in sorted(
                state.current_roster.members,
                key=lambda m: (m.peer != state.owner, m.role.value, str(m.peer)),
            )
        ]
        return summary

    async def _op_send(self, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
        group_id = self._group_arg(request)
        message_type = request.get("type", "text")
        if message_type not in SEND_TYPES:
            raise DaemonError(f"type must be one of {', '.join(SEND_TYPES)}")
        if isinstance(request.get("text"), str):
            data = request["text"].encode()
        elif isinstance(request.get("data_b64"), str):
            try:
                data = base64.b64decode(request["data_b64"], validate=True)
            except binascii.Error:
                raise DaemonError("data_b64 is not Base64") from None
        else:
            raise DaemonError("send needs 'text' or 'data_b64'")
        if len(data) > MAX_PLAINTEXT:
            raise DaemonError(
                f"the content is {len(data)} bytes; a message holds at most {MAX_PLAINTEXT}"
            )
        mime = request.get("mime")
        if mime is not None and (not isinstance(mime, str) or len(mime.encode()) > MAX_MIME):
            raise DaemonError(f"mime must be a MIME type of at most {MAX_MIME} bytes")
        wait = request.get("wait", True) is not False
        try:
            message_hash = await self.chat.send(
                group_id, data, message_type=message_type, mime=mime, wait=wait
            )
        except PendingError as exc:
            return {"message_hash": exc.message_hash.hex(), "status": "pending"}
        return {"message_hash": message_hash.hex(), "status": "ratified" if wait else "pending"}

    async def _op_history(self, request: dict[str, Any], emit: Emit) -> list[dict[str, Any]]:
        group_id = self._group_arg(request)
        limit = request.get("limit", HISTORY_DEFAULT_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise DaemonError("limit must be a positive whole number")
        messages = await self.chat.history(group_id)
        return [message_json(m, me=self.peer_id) for m in messages[-limit:]]

    async def _op_message(self, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
        group_id = self._group_arg(request)
        prefix = _str_arg(request, "hash").lower()
        matches = [
            m for m in await self.chat.history(group_id) if m.message_hash.hex().startswith(prefix)
        ]
        if len(prefix) < MIN_PREFIX or not matches:
            raise DaemonError(f"no ratified message {prefix!r} in this group")
        if len(matches) > 1:
            raise DaemonError(f"{prefix!r} names {len(matches)} messages; give more digits")
        found = message_json(matches[0], me=self.peer_id, data=True)
        found["votes"] = await self._votes(group_id, matches[0].message_hash)
        return found

    async def _votes(self, group_id: bytes, message_hash: bytes) -> int | None:
        row = await self.store.get_message(group_id, message_hash)
        if row is None or row.certificate is None:
            return None
        try:
            certificate = Certificate.from_cbor(cbor.loads(row.certificate, max_size=1 << 20))
        except DecodeError:
            return None
        return len(certificate.votes)

    async def _op_subscribe(self, request: dict[str, Any], emit: Emit) -> None:
        group_id = self._group_arg(request)
        state = self.chat.group_state(group_id)
        async with self.chat.subscribe(group_id) as messages:
            await emit({"kind": "subscribed", "group_id": group_id.hex(), "name": state.name})
            async for message in messages:
                await emit({"kind": "message", "message": message_json(message, me=self.peer_id)})


@asynccontextmanager
async def open_daemon(options: NodeOptions) -> AsyncIterator[Daemon]:
    """Run a node on ``options.data_dir`` for the duration of the block.

    Raises:
        StoreLockedError: another node runs on this data dir.
        KeyFileError, DataDirError, StoreError: the data dir cannot be used.
        TransportError: a listen address cannot be bound.
        ControlError: the control socket cannot be created.
    """
    identity = await trio.to_thread.run_sync(load_or_create_identity, options.data_dir)
    body_error: BaseException | None = None
    async with (
        open_store(options.data_dir) as store,
        open_host(identity, HostConfig(listen=options.listen)) as host,
    ):
        known = await trio.to_thread.run_sync(KnownPeers.load, peers_path(options.data_dir))
        now = trio.current_time()
        for entry in known.peers():
            if entry.peer_id != host.peer_id:
                host.peer_store.add_addrs(entry.peer_id, entry.addrs, KNOWN_PEER_TTL, now)
        if options.perf:
            from ..net.perf import install_perf

            install_perf(host)
        async with (
            open_chat_node(host, store, options.chat) as chat,
            trio.open_nursery() as nursery,
        ):
            daemon = Daemon(options, host, store, chat, known, nursery)
            await nursery.start(daemon._watch_connections)
            nursery.start_soon(daemon._save_peers_loop)
            nursery.start_soon(daemon._dial_known)
            if options.bootstrap:
                await nursery.start(
                    partial(
                        run_bootstrap, host, options.bootstrap, policy=options.bootstrap_backoff
                    )
                )
            if options.mdns:
                await _start_mdns(daemon, nursery)
            if options.control:
                await nursery.start(
                    serve_control, control_socket_path(options.data_dir), daemon.handle
                )
            try:
                yield daemon
            except BaseException as exc:
                body_error = exc
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await daemon.save_peers()
                nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error


async def _start_mdns(daemon: Daemon, nursery: trio.Nursery) -> None:
    """Start mDNS on the configured interface; a failure is logged, not fatal (the node works
    without discovery)."""
    from ..discovery.mdns import MdnsConfig, MdnsError, run_mdns

    config = MdnsConfig(interface=daemon.options.mdns_interface, dial_discovered=True)
    try:
        await nursery.start(partial(run_mdns, daemon.host, config))
    except (MdnsError, ValueError) as exc:
        logger.warning("mDNS is off: %s", exc)
        return
    daemon.mdns_running = True
    logger.info("mDNS on %s", daemon.options.mdns_interface)
