"""The control operations for developers (specs/control.md "Operations for developers"):
the plug-ins (``plugins``, ``plugins.load``, ``plugins.reload``, ``plugins.unload``) and one
chat query with any code to any peer (``query``).

They are part of :data:`~p2pchat.app.operations.OPERATIONS`, which adds :data:`DEV_OPERATIONS`
to the table (so this module imports :mod:`~p2pchat.app.operations` only inside the functions
that use its argument helpers). :func:`query_peer` is shared with ``p2pchat query`` when no node
runs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

import trio

from ..chat.core.jsonbody import body_from_json, body_to_json
from ..chat.core.wire import Response, is_query_code
from ..chat.services.chat_client import open_chat
from ..errors import LocalProtocolError, P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr
from ..net.host import Host
from .control import Emit
from .plugins import PluginError, PluginManager

if TYPE_CHECKING:
    from .daemon import Daemon
    from .operations import Operation

#: Seconds ``query`` waits (dial, stream and answer) unless told otherwise, and at most.
DEFAULT_QUERY_TIMEOUT: Final = 10.0
MAX_QUERY_TIMEOUT: Final = 300.0


class QueryError(P2PChatError):
    """A query cannot be sent as asked, or got no answer; the message says why in one line."""


def _plugins(node: Daemon) -> PluginManager:
    if node.plugins is None:
        raise PluginError("this node runs no plug-ins")
    return node.plugins


async def op_plugins(node: Daemon, request: dict[str, Any], emit: Emit) -> list[dict[str, Any]]:
    return [info.to_json() for info in _plugins(node).list()]


async def op_plugins_load(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    from .op_args import str_arg

    info = await _plugins(node).load(str_arg(request, "spec"))
    return info.to_json()


async def op_plugins_reload(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    from .op_args import str_arg

    info = await _plugins(node).reload(str_arg(request, "name"))
    return info.to_json()


async def op_plugins_unload(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    from .op_args import str_arg

    name = str_arg(request, "name")
    await _plugins(node).unload(name)
    return {"name": name}


def timeout_arg(request: dict[str, Any]) -> float:
    """The ``timeout`` argument in seconds.

    Raises:
        QueryError: not a number in (0, 300].
    """
    timeout = request.get("timeout", DEFAULT_QUERY_TIMEOUT)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_QUERY_TIMEOUT
    ):
        raise QueryError(f"timeout must be a number of seconds in (0, {MAX_QUERY_TIMEOUT:g}]")
    return float(timeout)


def query_body(code: str, body: Any, group_id: bytes | None) -> dict[str, Any]:
    """The CBOR body of a ``query`` from its JSON form, with ``group_id`` added if given.

    Raises:
        QueryError: a code that is not a query code, or a body that is not one.
    """
    if not is_query_code(code):
        raise QueryError(
            f"not a query code: {code!r} (1 to 15 ASCII letters and digits, not ending in 'R')"
        )
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise QueryError(f"the body is not JSON: {exc}") from None
    try:
        cbor_body = body_from_json({} if body is None else body)
    except LocalProtocolError as exc:
        raise QueryError(str(exc)) from None
    if group_id is not None:
        cbor_body["group_id"] = group_id
    return cbor_body


async def query_peer(
    host: Host,
    target: PeerID | Multiaddr,
    code: str,
    body: dict[str, Any],
    timeout: float,  # noqa: ASYNC109 (it bounds the dial, the stream and the answer)
) -> Response:
    """Open a chat stream to ``target``, ask one query, close the stream: the response.

    Raises:
        QueryError: no answer within ``timeout`` seconds, or a body that cannot be sent.
        P2PChatError: the peer cannot be reached, does not serve the chat, or broke the stream.
    """
    try:
        with trio.fail_after(timeout):
            async with open_chat(host, target) as client:
                return await client.query(code, body, timeout=timeout)
    except trio.TooSlowError:
        raise QueryError(f"no answer to {code!r} within {timeout:g} s") from None
    except LocalProtocolError as exc:
        raise QueryError(f"the body cannot be sent: {exc}") from None


def response_json(peer: PeerID, response: Response) -> dict[str, Any]:
    """The JSON view of a response (specs/control.md "Operations for developers")."""
    return {
        "peer_id": str(peer),
        "code": response.code,
        "rid": response.rid,
        "ok": response.ok,
        "reason": response.reason,
        "body": body_to_json(response.body),
    }


async def op_query(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    from .op_args import resolve_group, str_arg, target_arg

    target = target_arg(node, request, "peer")
    code = str_arg(request, "code")
    group = request.get("group")
    group_id = None
    if group is not None:
        if not isinstance(group, str):
            raise QueryError("group must be a group id or name")
        group_id = resolve_group(node.chat, group, member=False)
    body = query_body(code, request.get("body"), group_id)
    response = await query_peer(node.host, target, code, body, timeout_arg(request))
    peer = target if isinstance(target, PeerID) else target.peer_id
    assert peer is not None  # target_arg checked
    return response_json(peer, response)


#: The developers' operations, added to :data:`~p2pchat.app.operations.OPERATIONS`.
DEV_OPERATIONS: Final[dict[str, Operation]] = {
    "plugins": op_plugins,
    "plugins.load": op_plugins_load,
    "plugins.reload": op_plugins_reload,
    "plugins.unload": op_plugins_unload,
    "query": op_query,
}
