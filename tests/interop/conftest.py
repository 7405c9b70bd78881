"""The interop tests' py-libp2p interpreter (``P2PCHAT_INTEROP_PYTHON``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def python() -> str:
    """The py-libp2p interpreter; the test is skipped, with the reason, without one."""
    python = os.environ.get("P2PCHAT_INTEROP_PYTHON", "")
    if not python or not Path(python).exists():
        pytest.skip("P2PCHAT_INTEROP_PYTHON names no py-libp2p interpreter (make unit sets it)")
    return python
