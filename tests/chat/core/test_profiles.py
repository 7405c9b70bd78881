"""Members' names (specs/chat.md §18): the latest valid profile, a short id on a collision or a
rename."""

from __future__ import annotations

import pytest

from p2pchat.chat.core.profiles import PROFILE, display_labels, read_name, short_id
from p2pchat.chat.core.refs import check_reference
from p2pchat.identity import KeyPair

ANN, BEN, CID = (KeyPair.generate().peer_id for _ in range(3))


@pytest.mark.parametrize(
    ("content", "name"),
    [
        (b"Ann", "Ann"),
        (b"  Ann  ", "Ann"),
        ("Zoë 🌱".encode(), "Zoë 🌱"),
        (b"", None),
        (b"   ", None),
        (b"two\nlines", None),
        (b"x" * 65, None),
        (b"\xff\xfe", None),
        (None, None),
    ],
)
def test_read_name(content: bytes | None, name: str | None) -> None:
    assert read_name(content) == name


def test_a_unique_unchanged_name_is_shown_alone() -> None:
    assert display_labels([(ANN, b"Ann"), (BEN, b"Ben")]) == {ANN: "Ann", BEN: "Ben"}


def test_two_members_with_one_name_are_told_apart() -> None:
    labels = display_labels([(ANN, b"Sam"), (BEN, b"sam"), (CID, b"Cid")])
    assert labels == {ANN: f"Sam ({short_id(ANN)})", BEN: f"sam ({short_id(BEN)})", CID: "Cid"}
    assert short_id(ANN) != short_id(BEN)


def test_a_rename_shows_the_short_id_and_the_latest_name() -> None:
    labels = display_labels([(ANN, b"Ann"), (ANN, b"Queen"), (BEN, b"")])
    assert labels == {ANN: f"Queen ({short_id(ANN)})"}  # an invalid profile names nobody


def test_a_profile_refers_to_nothing() -> None:
    def nothing(_: bytes) -> None:
        return None

    assert check_reference(PROFILE, ANN, None, BEN, nothing) is None
    assert check_reference(PROFILE, ANN, bytes(32), BEN, nothing) == "bad reference"
