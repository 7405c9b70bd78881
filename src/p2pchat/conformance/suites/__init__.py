"""The suites: importing this package registers every case (one module per protocol)."""

from __future__ import annotations

from . import chat, identify, multistream, noise, perf, ping, yamux

__all__ = ["chat", "identify", "multistream", "noise", "perf", "ping", "yamux"]
