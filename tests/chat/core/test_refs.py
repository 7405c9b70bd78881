"""Replies, edits, deletes and reactions: the role rule and the fold (specs/chat.md §17)."""

from __future__ import annotations

import pytest

from chat.core.groups import NOW, certify, make_group, text_packet
from p2pchat.chat.core.packet import sha256
from p2pchat.chat.core.refs import (
    DELETE,
    EDIT,
    REACTION,
    Item,
    RefInfo,
    check_reference,
    fold,
)
from p2pchat.chat.core.validate import check_for_delivery, check_for_ratification
from p2pchat.identity import PeerID

GROUP = make_group()
OWNER = GROUP.owner.peer_id
ALICE = GROUP.user.peer_id
BOB = GROUP.ratifiers[1].peer_id
TARGET = sha256(b"alice's message")
ROSTER_MSG = sha256(b"a roster message")
HELD = {TARGET: RefInfo(ALICE, "text"), ROSTER_MSG: RefInfo(OWNER, "roster")}


def _check(kind: str, author: PeerID, ref: bytes | None) -> str | None:
    return check_reference(kind, author, ref, OWNER, HELD.get)


@pytest.mark.parametrize(
    ("kind", "author", "ref", "reason"),
    [
        ("text", ALICE, None, None),  # a plain message
        ("text", BOB, TARGET, None),  # a reply
        ("file", BOB, TARGET, None),  # a reply with a file
        (EDIT, ALICE, TARGET, None),
        (EDIT, BOB, TARGET, "not allowed"),  # someone else's message
        (EDIT, OWNER, TARGET, "not allowed"),  # the owner moderates by deleting, not editing
        (DELETE, ALICE, TARGET, None),
        (DELETE, OWNER, TARGET, None),  # moderation
        (DELETE, BOB, TARGET, "not allowed"),
        (REACTION, BOB, TARGET, None),
        (EDIT, ALICE, None, "bad reference"),
        (DELETE, ALICE, None, "bad reference"),
        (REACTION, ALICE, None, "bad reference"),
        (REACTION, BOB, sha256(b"not held"), "bad reference"),
        ("text", BOB, sha256(b"not held"), "bad reference"),
        (DELETE, OWNER, ROSTER_MSG, "bad reference"),  # only content messages are referred to
        ("roster", OWNER, None, None),  # not this rule's
        ("app/type", BOB, sha256(b"anything"), None),  # an application type keeps its own rules
    ],
)
def test_reference_rule(kind: str, author: PeerID, ref: bytes | None, reason: str | None) -> None:
    assert _check(kind, author, ref) == reason


def test_a_reference_to_an_edit_is_refused() -> None:
    edit = sha256(b"an edit")
    held = {**HELD, edit: RefInfo(ALICE, EDIT)}
    assert check_reference(EDIT, ALICE, edit, OWNER, held.get) == "bad reference"


# -- in the ratification and delivery checks ---------------------------------------------------


def _packets() -> tuple[bytes, dict[bytes, RefInfo]]:
    first = text_packet(GROUP.group_id, GROUP.user)
    return first.message_hash, {first.message_hash: RefInfo(ALICE, "text")}


@pytest.mark.parametrize(
    ("author_index", "kind", "reason"),
    [(0, EDIT, None), (1, EDIT, "not allowed"), (2, DELETE, None), (1, DELETE, "not allowed")],
)
def test_ratifiers_and_members_enforce_the_rule(
    author_index: int, kind: str, reason: str | None
) -> None:
    author = (GROUP.user, GROUP.ratifiers[1], GROUP.owner)[author_index]
    first, held = _packets()
    packet = text_packet(GROUP.group_id, author, message_type=kind, parents=[first], ref_hash=first)
    state = GROUP.state()
    assert (
        check_for_ratification(packet, state, now_ms=NOW, have=lambda h: h in held, ref_of=held.get)
        == reason
    )
    certified = certify(packet, GROUP.ratifiers[:2])
    assert check_for_delivery(certified, state, have=lambda h: h in held, ref_of=held.get) == reason


def test_a_reference_to_a_message_not_held_is_refused_at_ratification() -> None:
    first, held = _packets()
    packet = text_packet(
        GROUP.group_id, GROUP.user, message_type=EDIT, parents=[first], ref_hash=sha256(b"x")
    )
    reason = check_for_ratification(
        packet, GROUP.state(), now_ms=NOW, have=lambda h: h in held, ref_of=held.get
    )
    assert reason == "bad reference"


# -- the fold ----------------------------------------------------------------------------------


def _item(n: int, author: PeerID, kind: str, ref: int | None, content: bytes | None) -> Item:
    return Item(
        sha256(bytes([n])), author, kind, None if ref is None else sha256(bytes([ref])), content
    )


def test_fold_applies_edits_in_order_and_keeps_versions() -> None:
    items = [
        _item(1, ALICE, "text", None, b"helo"),
        _item(2, ALICE, EDIT, 1, b"hello"),
        _item(3, ALICE, EDIT, 1, b"hello!"),
    ]
    (entry,) = fold(items, OWNER)
    assert entry.content == b"hello!"
    assert entry.edited
    assert entry.versions == [b"helo", b"hello", b"hello!"]


def test_fold_ignores_an_edit_by_another_author() -> None:
    items = [_item(1, ALICE, "text", None, b"mine"), _item(2, BOB, EDIT, 1, b"yours")]
    (entry,) = fold(items, OWNER)
    assert entry.content == b"mine"
    assert not entry.edited


def test_fold_delete_hides_the_message_and_later_changes() -> None:
    items = [
        _item(1, ALICE, "text", None, b"oops"),
        _item(2, BOB, REACTION, 1, b"+1"),
        _item(3, OWNER, DELETE, 1, b""),
        _item(4, ALICE, EDIT, 1, b"back"),
        _item(5, BOB, REACTION, 1, b"+1"),
    ]
    (entry,) = fold(items, OWNER)
    assert entry.deleted_by == OWNER
    assert entry.content is None
    assert entry.versions == []
    assert entry.reactions == {}


def test_fold_ignores_a_delete_by_someone_not_allowed() -> None:
    items = [_item(1, ALICE, "text", None, b"stay"), _item(2, BOB, DELETE, 1, b"")]
    (entry,) = fold(items, OWNER)
    assert entry.deleted_by is None
    assert entry.content == b"stay"


def test_fold_toggles_reactions_per_author() -> None:
    items = [
        _item(1, ALICE, "text", None, b"lunch?"),
        _item(2, BOB, REACTION, 1, b"yes"),
        _item(3, OWNER, REACTION, 1, b"yes"),
        _item(4, BOB, REACTION, 1, b"yes"),  # toggled off
        _item(5, ALICE, REACTION, 1, b"no"),
    ]
    (entry,) = fold(items, OWNER)
    assert entry.reactions == {"no": [ALICE], "yes": [OWNER]}


def test_fold_keeps_replies_and_other_types_in_order() -> None:
    items = [
        _item(1, ALICE, "text", None, b"q"),
        _item(2, OWNER, "roster", None, b"r"),
        _item(3, BOB, "text", 1, b"a"),
    ]
    entries = fold(items, OWNER)
    assert [e.item.message_hash for e in entries] == [sha256(bytes([n])) for n in (1, 2, 3)]
    assert entries[2].item.ref_hash == sha256(bytes([1]))


def test_fold_is_the_same_for_the_same_history() -> None:
    items = [
        _item(1, ALICE, "text", None, b"x"),
        _item(2, BOB, REACTION, 1, b"a"),
        _item(3, OWNER, REACTION, 1, b"b"),
        _item(4, ALICE, EDIT, 1, b"y"),
    ]
    assert fold(items, OWNER) == fold(list(items), OWNER)
    assert list(fold(items, OWNER)[0].reactions) == ["a", "b"]


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("profile", None),
        ("leave", None),
        ("text", "not allowed"),
        ("reaction", "not allowed"),
        ("avatar", "not allowed"),
    ],
)
def test_a_viewer_may_only_name_itself_and_leave(kind: str, reason: str | None) -> None:
    """§17 "Viewers": ratifiers and members accept a profile and a leave from a viewer."""
    first, held = _packets()
    ref = first if kind == "reaction" else None
    packet = text_packet(
        GROUP.group_id,
        GROUP.viewer,
        message_type=kind,
        parents=[first],
        ref_hash=ref,
        data=b"Vera" if kind == "profile" else b"",
    )
    state = GROUP.state()
    have = held.__contains__
    assert check_for_ratification(packet, state, now_ms=NOW, have=have, ref_of=held.get) == reason
    certified = certify(packet, GROUP.ratifiers[:2])
    assert check_for_delivery(certified, state, have=have, ref_of=held.get) == reason
