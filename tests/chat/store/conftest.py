"""The ``store`` fixture: an open store holding group G1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat.store.helpers import G1
from p2pchat.chat.store import ChatStore, open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ChatStore]:
    async with open_store(tmp_path / "data") as opened:
        await opened.add_group(G1, b"genesis-1", joined_at=1)
        yield opened
