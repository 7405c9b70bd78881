"""The DHT operations of the control socket (specs/control.md "DHT"): ``dht.status``,
``dht.peer`` and ``dht.providers``, registered in
:data:`~p2pchat.app.operations.OPERATIONS`."""

from __future__ import annotations

import binascii
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from ..discovery.kad import KadDHT
from ..errors import DecodeError, P2PChatError
from ..identity import PeerID
from .control import Emit

if TYPE_CHECKING:
    from .daemon import Daemon

#: A lookup asked for on the control socket ends after this long.
LOOKUP_TIMEOUT: Final = 60.0
MAX_KEY_HEX: Final = 256


class DhtOperationError(P2PChatError):
    """A DHT request cannot be done (the DHT is off, a bad argument); one line says why."""


def _dht(node: Daemon) -> KadDHT:
    internet = node.internet
    if internet is None or internet.dht is None:
        raise DhtOperationError("the DHT is off (set [dht] enabled = true in the config)")
    return internet.dht


def _arg(request: dict[str, Any], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str) or not value:
        raise DhtOperationError(f"'{name}' must be a non-empty string")
    return value


async def op_dht_status(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    internet = node.internet
    status: dict[str, Any] = {
        "enabled": internet is not None and internet.dht is not None,
        "reachability": internet.reachability() if internet is not None else "unknown",
    }
    if internet is not None and internet.dht is not None:
        stats = attrs.asdict(internet.dht.statistics())
        stats["buckets"] = {str(k): v for k, v in stats["buckets"].items()}
        status.update(stats)
        status["configured_mode"] = internet.options.dht_mode
        status["bootstrap"] = [str(a) for a in internet.options.dht_bootstrap]
    return status


async def op_dht_find_peer(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    dht = _dht(node)
    text = _arg(request, "peer")
    try:
        peer = PeerID.from_string(text)
    except DecodeError as exc:
        raise DhtOperationError(f"not a peer id: {text[:80]!r} ({exc.hint})") from None
    with trio.move_on_after(LOOKUP_TIMEOUT):
        addrs = await dht.find_peer(peer)
        return {"peer_id": str(peer), "addrs": [str(a) for a in addrs], "found": bool(addrs)}
    raise DhtOperationError(f"the lookup of {peer} took over {LOOKUP_TIMEOUT:.0f} s")


async def op_dht_providers(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    dht = _dht(node)
    text = _arg(request, "key")
    key = b""
    if len(text) <= MAX_KEY_HEX:
        try:
            key = binascii.unhexlify(text)
        except (ValueError, binascii.Error):
            key = b""
    if not key:
        raise DhtOperationError("the key must be hex (a multihash, up to 128 bytes)")
    with trio.move_on_after(LOOKUP_TIMEOUT):
        found = await dht.providers(key)
        return {
            "key": key.hex(),
            "providers": [
                {"peer_id": str(p.peer), "addrs": [str(a) for a in p.addrs]} for p in found
            ],
        }
    raise DhtOperationError(f"the providers lookup took over {LOOKUP_TIMEOUT:.0f} s")


DHT_OPERATIONS: Final = {
    "dht.status": op_dht_status,
    "dht.peer": op_dht_find_peer,
    "dht.providers": op_dht_providers,
}
