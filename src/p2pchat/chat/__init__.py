"""The ratified group chat (``/p2pchat/1.0.0``); see specs/chat.md.

``chat.core`` holds the sans-IO cores, ``chat.services`` and ``chat.store`` the Trio and SQLite
drivers, ``chat.node`` the :class:`ChatNode` facade. The public names below are loaded on first
use, so importing a core module (``p2pchat.chat.core.packet``) loads no driver.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core.roster import Role as Role
    from .node import ChatConfig as ChatConfig
    from .node import ChatError as ChatError
    from .node import ChatMessage as ChatMessage
    from .node import ChatNode as ChatNode
    from .node import NotAllowedError as NotAllowedError
    from .node import PendingError as PendingError
    from .node import open_chat_node as open_chat_node
    from .services.chat_client import ChatClient as ChatClient
    from .services.chat_client import open_chat as open_chat
    from .services.clients import QueryRefusedError as QueryRefusedError
    from .services.dispatch import Dispatcher as Dispatcher
    from .services.dispatch import Handler as Handler
    from .services.dispatch import QueryContext as QueryContext
    from .services.dispatch import Refusal as Refusal
    from .services.dispatch import install_chat as install_chat
    from .store import open_store as open_store

_PUBLIC = {
    "Role": ".core.roster",
    "ChatConfig": ".node",
    "ChatError": ".node",
    "ChatMessage": ".node",
    "ChatNode": ".node",
    "NotAllowedError": ".node",
    "PendingError": ".node",
    "open_chat_node": ".node",
    "ChatClient": ".services.chat_client",
    "open_chat": ".services.chat_client",
    "QueryRefusedError": ".services.clients",
    "Dispatcher": ".services.dispatch",
    "Handler": ".services.dispatch",
    "QueryContext": ".services.dispatch",
    "Refusal": ".services.dispatch",
    "install_chat": ".services.dispatch",
    "open_store": ".store",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
