"""p2pchat: ratified peer-to-peer group chat on a libp2p-compatible Trio stack."""

from __future__ import annotations

__version__ = "0.1.0"
