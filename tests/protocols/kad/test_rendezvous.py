"""Group rendezvous keys (specs/kad.md §10): the vector, and what changes a key."""

from __future__ import annotations

import pytest

from p2pchat.protocols.kad.rendezvous import (
    WINDOW,
    keys_to_provide,
    keys_to_search,
    rendezvous_key,
    window_of,
)

EPOCH_KEY = bytes(range(32))
GROUP = bytes([0xAA]) * 32


def test_vector() -> None:
    # specs/kad.md §10
    key = rendezvous_key(EPOCH_KEY, GROUP, 1, 40000)
    assert key.hex() == "1220dfa273bc6e7fbf6830be6a0b7ed91aa1f804b5a255d0d774a3ed40d4b313786f"
    assert window_of(1_764_000_000) == 40833


def test_every_input_changes_the_key() -> None:
    base = rendezvous_key(EPOCH_KEY, GROUP, 1, 5)
    others = {
        rendezvous_key(bytes(32), GROUP, 1, 5),
        rendezvous_key(EPOCH_KEY, bytes(32), 1, 5),
        rendezvous_key(EPOCH_KEY, GROUP, 2, 5),
        rendezvous_key(EPOCH_KEY, GROUP, 1, 6),
    }
    assert base not in others
    assert len(others) == 4
    assert GROUP not in base


def test_a_searcher_meets_a_provider_across_a_window_boundary() -> None:
    boundary = 1000 * WINDOW
    provided = keys_to_provide(EPOCH_KEY, GROUP, 0, boundary - 1)  # just before
    searched = keys_to_search(EPOCH_KEY, GROUP, 0, boundary + 1)  # just after
    assert set(provided) & set(searched)
    provided = keys_to_provide(EPOCH_KEY, GROUP, 0, boundary + 1)  # just after
    searched = keys_to_search(EPOCH_KEY, GROUP, 0, boundary - 1)  # just before
    assert set(provided) & set(searched)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        rendezvous_key(b"short", GROUP, 0, 0)
    with pytest.raises(ValueError, match="negative"):
        rendezvous_key(EPOCH_KEY, GROUP, -1, 0)
    with pytest.raises(ValueError, match="1970"):
        window_of(-1.0)
