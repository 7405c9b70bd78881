"""p2pchat: ratified peer-to-peer group chat on a libp2p-compatible Trio stack.

The names a handler author needs are here (loaded on first use, so ``import p2pchat`` stays as
cheap as the CLI needs it): keys and addresses, the Host, the chat node, the dispatcher's types
(:class:`QueryContext`, :data:`Handler`, :class:`Refusal`), the plug-in context
(:class:`PluginContext`) and the control-socket client (:mod:`p2pchat.client`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .app.plugins import PluginContext as PluginContext
    from .chat.node import ChatMessage as ChatMessage
    from .chat.node import ChatNode as ChatNode
    from .chat.node import open_chat_node as open_chat_node
    from .chat.services.chat_client import ChatClient as ChatClient
    from .chat.services.chat_client import open_chat as open_chat
    from .chat.services.dispatch import Dispatcher as Dispatcher
    from .chat.services.dispatch import Handler as Handler
    from .chat.services.dispatch import QueryContext as QueryContext
    from .chat.services.dispatch import Refusal as Refusal
    from .chat.services.dispatch import install_chat as install_chat
    from .chat.store import open_store as open_store
    from .errors import P2PChatError as P2PChatError
    from .identity import KeyPair as KeyPair
    from .identity import PeerID as PeerID
    from .multiaddr import Multiaddr as Multiaddr
    from .net.host import HandlerExistsError as HandlerExistsError
    from .net.host import Host as Host
    from .net.host import open_host as open_host
    from .net.muxer import MuxedStream as MuxedStream

_PUBLIC = {
    "PluginContext": ".app.plugins",
    "ChatMessage": ".chat.node",
    "ChatNode": ".chat.node",
    "open_chat_node": ".chat.node",
    "ChatClient": ".chat.services.chat_client",
    "open_chat": ".chat.services.chat_client",
    "Dispatcher": ".chat.services.dispatch",
    "Handler": ".chat.services.dispatch",
    "QueryContext": ".chat.services.dispatch",
    "Refusal": ".chat.services.dispatch",
    "install_chat": ".chat.services.dispatch",
    "open_store": ".chat.store",
    "P2PChatError": ".errors",
    "KeyPair": ".identity",
    "PeerID": ".identity",
    "Multiaddr": ".multiaddr",
    "HandlerExistsError": ".net.host",
    "Host": ".net.host",
    "open_host": ".net.host",
    "MuxedStream": ".net.muxer",
}

__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
