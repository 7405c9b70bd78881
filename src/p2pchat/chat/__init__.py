"""The ratified group chat (``/p2pchat/1.0.0``); see specs/chat.md."""

from __future__ import annotations

from .dispatch import Dispatcher as Dispatcher
from .dispatch import Refusal as Refusal
from .node import ChatConfig as ChatConfig
from .node import ChatError as ChatError
from .node import ChatMessage as ChatMessage
from .node import ChatNode as ChatNode
from .node import NotAllowedError as NotAllowedError
from .node import PendingError as PendingError
from .node import open_chat_node as open_chat_node
from .roster import Role as Role
from .store import open_store as open_store
