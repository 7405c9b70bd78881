"""The arguments of control-socket operations (specs/control.md): reading them from a request,
and the one-line error every refusal is. Shared by ``operations.py`` and the operation modules
beside it (``group_ops``, ``file_ops``, ``profile_ops``, ``dev_operations``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import trio

from ..chat.node import ChatMessage, ChatNode
from ..errors import DecodeError, P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr

if TYPE_CHECKING:
    from .daemon import Daemon

#: The shortest group id or message hash prefix that names one.
MIN_PREFIX: Final = 4
#: The longest media type a request may give.
MAX_MIME: Final = 128


class DaemonError(P2PChatError):
    """A request to the node cannot be done; the message says why in one line."""


# -- arguments -------------------------------------------------------------------------------


def str_arg(request: dict[str, Any], name: str) -> str:
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


def peer_of(target: PeerID | Multiaddr) -> PeerID:
    if isinstance(target, PeerID):
        return target
    peer = target.peer_id
    assert peer is not None  # parse_peer checked
    return peer


def resolve_group(chat: ChatNode, text: str, *, member: bool = True) -> bytes:
    """A group id from its hex id, a unique hex prefix (4+ digits), a unique name, or a unique
    prefix of a name (case-insensitive).

    Raises:
        DaemonError: no such group, or several match.
    """
    text = text.strip()
    groups = chat.groups()
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
        matches = [g for g in groups if chat.group_state(g).name == text]
    if not matches:
        folded = text.casefold()
        matches = [g for g in groups if chat.group_state(g).name.casefold().startswith(folded)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise DaemonError(f"{text!r} names {len(matches)} groups; use more of the group id")
    raise DaemonError(f"no group {text!r} on this node (see: p2pchat group list)")


def target_arg(node: Daemon, request: dict[str, Any], name: str) -> PeerID | Multiaddr:
    """A peer argument; a bare peer ID must be connected or have a known address.

    Raises:
        DaemonError: malformed, or a peer ID this node has no address for.
    """
    target = parse_peer(str_arg(request, name))
    if (
        isinstance(target, PeerID)
        and target != node.peer_id
        and node.host.connection(target) is None
        and not node.host.peer_store.addrs(target, trio.current_time())
    ):
        raise DaemonError(
            f"this node knows no address for {target}: give its multiaddr "
            f"(/ip4/<address>/tcp/<port>/p2p/{target}), or connect to it first"
        )
    return target


def group_arg(node: Daemon, request: dict[str, Any]) -> bytes:
    return resolve_group(node.chat, str_arg(request, "group"))


# -- operations ----------------------------------------------------------------------------


async def find_message(node: Daemon, group_id: bytes, prefix: str) -> ChatMessage:
    """The ratified message of the group whose hash starts with ``prefix`` (4+ hex digits).

    Raises:
        DaemonError: none, or several.
    """
    prefix = prefix.lower()
    matches = [
        m for m in await node.chat.history(group_id) if m.message_hash.hex().startswith(prefix)
    ]
    if len(prefix) < MIN_PREFIX or not matches:
        raise DaemonError(f"no ratified message {prefix!r} in this group")
    if len(matches) > 1:
        raise DaemonError(f"{prefix!r} names {len(matches)} messages; give more digits")
    return matches[0]
