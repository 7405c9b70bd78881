"""The state the parts of the group engine share: :class:`~.engine.ChatEngine` sets it, and the
parts mixed into it (``engine_outbox.py``, ``engine_accept.py``) read and change it. Declared
once here so the parts agree on it. No I/O, no clock.
"""

from __future__ import annotations

from ...identity import KeyPair, PeerID
from . import crypto
from .engine_records import Attempt, EngineConfig
from .key_fetch import KeyFetches
from .outbox import Outbox
from .view import GroupView


class EngineState:
    """The engine's fields (set by ``ChatEngine.__init__``)."""

    identity: KeyPair
    peer_id: PeerID
    hpke: crypto.HpkeKeyPair
    config: EngineConfig
    _groups: dict[bytes, GroupView]
    keys: KeyFetches
    outbox: Outbox
    _attempts: dict[bytes, Attempt]
    #: Per group, our message written last whose commit is not yet applied (hash, rank).
    _written: dict[bytes, tuple[bytes, int]]
