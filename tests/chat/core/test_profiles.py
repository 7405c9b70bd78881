"""Members' names (specs/chat.md §18): the latest valid profile, a short id on a collision or a
rename."""

from __future__ import annotations

import attrs
import pytest

from chat.core.groups import NOW, certify, make_group, text_packet
from p2pchat.chat.core.artifact import ChunkedRef, chunk_count
from p2pchat.chat.core.packet import Artifact, Headers, Message, Packet, sha256, sign_message
from p2pchat.chat.core.profiles import (
    AVATAR,
    MAX_AVATAR,
    PROFILE,
    avatar_refs,
    check_avatar,
    display_labels,
    read_name,
    short_id,
)
from p2pchat.chat.core.refs import RefInfo, check_reference
from p2pchat.chat.core.validate import check_for_delivery, check_for_ratification
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


# -- avatars -----------------------------------------------------------------------------------


def _avatar(
    *, mime: str = "image/png", size: int = 1000, ref: bytes | None = None, chunked: bool = True
) -> Message:
    ref_ = ChunkedRef(sha256(b"root"), size, chunk_count(size)) if chunked else None
    return Message(
        group_id=sha256(b"group"),
        epoch=0,
        message_type=AVATAR,
        time_stamp=0,
        author=ANN,
        ref_hash=ref,
        parents=(),
        headers=Headers(),
        artifact=Artifact(mime, b"name", sha256(b"name"), sha256(b"key"), ref_),
    )


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (_avatar(), None),
        (_avatar(mime="image/webp", size=MAX_AVATAR), None),
        (_avatar(size=MAX_AVATAR + 1), "malformed"),  # bounded
        (_avatar(mime="image/svg+xml"), "malformed"),  # images of the allowed types only
        (_avatar(mime="text/plain"), "malformed"),
        (_avatar(chunked=False), "malformed"),  # an artifact of the chunked kind
        (_avatar(ref=sha256(b"x")), "malformed"),  # refers to nothing
    ],
)
def test_check_avatar(message: Message, reason: str | None) -> None:
    assert check_avatar(message) == reason


def test_a_profile_refers_only_to_its_authors_avatar() -> None:
    mine, theirs, text = sha256(b"mine"), sha256(b"theirs"), sha256(b"text")
    held = {
        mine: RefInfo(ANN, AVATAR),
        theirs: RefInfo(BEN, AVATAR),
        text: RefInfo(ANN, "text"),
    }
    assert check_reference(PROFILE, ANN, mine, CID, held.get) is None
    assert check_reference(PROFILE, ANN, theirs, CID, held.get) == "bad reference"
    assert check_reference(PROFILE, ANN, text, CID, held.get) == "bad reference"
    assert check_reference(PROFILE, ANN, sha256(b"not held"), CID, held.get) == "bad reference"
    assert check_reference(PROFILE, ANN, None, CID, held.get) is None


def test_the_avatar_is_the_latest_valid_profiles_reference() -> None:
    first, second = sha256(b"first"), sha256(b"second")
    assert avatar_refs([(ANN, b"Ann", first)]) == {ANN: first}
    assert avatar_refs([(ANN, b"Ann", first), (ANN, b"Ann", second)]) == {ANN: second}
    assert avatar_refs([(ANN, b"Ann", first), (ANN, b"", None)]) == {ANN: first}  # not valid
    assert avatar_refs([(ANN, b"Ann", first), (ANN, b"Annie", None)]) == {}  # taken down
    assert avatar_refs([(ANN, b"Ann", first), (BEN, b"Ben", second)]) == {
        ANN: first,
        BEN: second,
    }


def test_ratifiers_and_members_check_the_avatar_rule() -> None:
    group = make_group()
    state = group.state()
    first = text_packet(group.group_id, group.user)
    held = {first.message_hash: RefInfo(group.user.peer_id, "text")}
    aes_key, iv = bytes(60), bytes(12)

    def signed(mime: str) -> Packet:
        avatar = _avatar(mime=mime)
        message = attrs.evolve(
            avatar,
            group_id=group.group_id,
            author=group.user.peer_id,
            time_stamp=NOW,
            parents=(first.message_hash,),
            artifact=attrs.evolve(avatar.artifact, key_hash=sha256(aes_key + iv)),
        )
        return sign_message(group.user, message, aes_key, iv)

    for mime, reason in (("image/png", None), ("application/pdf", "malformed")):
        packet = signed(mime)
        have = held.__contains__
        assert (
            check_for_ratification(packet, state, now_ms=NOW, have=have, ref_of=held.get) == reason
        )
        certified = certify(packet, group.ratifiers[:2])
        assert check_for_delivery(certified, state, have=have, ref_of=held.get) == reason
