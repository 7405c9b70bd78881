"""The roster chain in pages (specs/chat.md §16): pages built, read and verified link by link;
forged, reordered, gapped or stuck pages refused with their reasons."""

from __future__ import annotations

from typing import Any

import pytest

from chat.core.groups import NOW, certify, key, make_group, member, roster_packet
from p2pchat.chat.core import cbor, crypto
from p2pchat.chat.core.genesis import new_group
from p2pchat.chat.core.group_state import GroupState
from p2pchat.chat.core.packet import Packet
from p2pchat.chat.core.roster import Member, Role
from p2pchat.chat.core.roster_sync import (
    ChainFetch,
    RosterPageError,
    read_roster_page,
    roster_page,
)


def grown_chain(changes: int) -> GroupState:
    """The test group grown by ``changes`` roster changes, one member added by each."""
    group = make_group()
    state = group.state()
    for n in range(changes):
        members = [*state.current_roster.members, member(key(100 + n), Role.USER)]
        packet = roster_packet(state, group.owner, members, now_ms=NOW + n)
        state.apply_roster_packet(certify(packet, group.ratifiers[:2]))
    return state


def packet_size(packet: Packet) -> int:
    return len(cbor.dumps(packet.to_cbor()))


def fetch_all(state: GroupState, max_bytes: int) -> tuple[ChainFetch, int]:
    packets = state.roster_packets
    session = ChainFetch(state.group_id)
    asked = 0
    while (first := session.next_from) is not None:
        asked += 1
        if not session.take(roster_page(state.genesis, packets, first, max_bytes=max_bytes)):
            break
    return session, asked


def test_pages_hold_consecutive_epochs_and_end_with_null() -> None:
    state = grown_chain(5)
    packets = state.roster_packets
    budget = packet_size(packets[1]) + packet_size(packets[2])
    body = roster_page(state.genesis, packets, 0, max_bytes=budget)
    assert "genesis" in body
    page = read_roster_page(body, 0)
    assert [p.message.epoch for p in page.packets] == [0]  # the genesis takes its share
    assert page.next == 1
    body = roster_page(state.genesis, packets, 1, max_bytes=budget)
    assert "genesis" not in body
    page = read_roster_page(body, 1)
    assert [p.message.epoch for p in page.packets] == [1, 2]
    assert page.next == 3
    last = read_roster_page(roster_page(state.genesis, state.roster_packets, 5), 5)
    assert last.packets == ()
    assert last.next is None


def test_a_page_holds_at_least_one_roster_message() -> None:
    state = grown_chain(2)
    body = roster_page(state.genesis, state.roster_packets, 1, max_bytes=1)
    assert len(body["rosters"]) == 1
    assert body["next"] is None


def test_a_page_beyond_the_chain_is_a_future_epoch() -> None:
    state = grown_chain(2)
    with pytest.raises(RosterPageError) as info:
        roster_page(state.genesis, state.roster_packets, 3)
    assert info.value.hint == "future epoch"


def test_a_joiner_verifies_the_whole_chain_page_by_page() -> None:
    state = grown_chain(6)
    session, asked = fetch_all(state, max_bytes=1)
    assert asked == 6
    assert session.state is not None
    assert session.state.current_epoch == 6
    assert session.state.current_roster == state.current_roster
    assert session.next_from is None


def test_a_reordered_page_is_refused() -> None:
    state = grown_chain(3)
    body = roster_page(state.genesis, state.roster_packets, 1)
    body["rosters"] = [body["rosters"][1], body["rosters"][0]]
    session = ChainFetch(state.group_id)
    session.take(roster_page(state.genesis, state.roster_packets, 0, max_bytes=1))
    with pytest.raises(RosterPageError) as info:
        session.take(body)
    assert info.value.hint == "bad page"


def test_a_page_with_a_gap_or_a_next_that_does_not_advance_is_refused() -> None:
    state = grown_chain(3)
    gapped = roster_page(state.genesis, state.roster_packets, 0)
    del gapped["rosters"][1]
    with pytest.raises(RosterPageError) as info:
        read_roster_page(gapped, 0)
    assert info.value.hint == "bad page"
    stuck: dict[str, Any] = {"rosters": [], "next": 1}
    with pytest.raises(RosterPageError) as info:
        read_roster_page(stuck, 1)
    assert info.value.hint == "bad page"
    lying = roster_page(state.genesis, state.roster_packets, 0, max_bytes=1)
    lying["next"] = 2
    with pytest.raises(RosterPageError) as info:
        read_roster_page(lying, 0)
    assert info.value.hint == "bad page"


def test_the_genesis_comes_on_the_first_page_only() -> None:
    state = grown_chain(2)
    first = roster_page(state.genesis, state.roster_packets, 0)
    del first["genesis"]
    with pytest.raises(RosterPageError) as info:
        read_roster_page(first, 0)
    assert info.value.hint == "malformed"
    later = roster_page(state.genesis, state.roster_packets, 1)
    later["genesis"] = state.genesis.to_cbor()
    with pytest.raises(RosterPageError):
        read_roster_page(later, 1)


def test_a_forged_roster_message_is_refused_with_its_reason() -> None:
    group = make_group()
    state = grown_chain(2)
    forged_members = [*state.current_roster.members, member(key(200), Role.RATIFIER)]
    forged = roster_packet(state, group.owner, forged_members)
    # The vote of a user: no ratifier's, no quorum.
    body = roster_page(state.genesis, [*state.roster_packets, certify(forged, [group.user])], 0)
    session = ChainFetch(state.group_id)
    with pytest.raises(RosterPageError) as info:
        session.take(body)
    assert info.value.hint == "bad certificate"


def test_a_genesis_of_another_group_is_refused() -> None:
    state = grown_chain(1)
    other = new_group(key(1), "other", [member(key(1), Role.RATIFIER)], now_ms=NOW, nonce=b"x" * 16)
    body = roster_page(other, (), 0)
    with pytest.raises(RosterPageError) as info:
        ChainFetch(state.group_id).take(body)
    assert info.value.hint == "unknown group"


def test_a_chain_over_budget_is_cut_off() -> None:
    state = grown_chain(4)
    session = ChainFetch(state.group_id, max_pages=2)
    session.take(roster_page(state.genesis, state.roster_packets, 0, max_bytes=1))
    with pytest.raises(RosterPageError) as info:
        session.take(roster_page(state.genesis, state.roster_packets, 1, max_bytes=1))
    assert info.value.hint == "over quota"


def test_a_node_creates_no_genesis_too_large_to_share_the_first_page() -> None:
    owner = key(1)
    members = [member(owner, Role.RATIFIER)]
    hybrid = crypto.HpkeKeyPair.generate("MLKEM768_X25519").public_bytes()
    members += [Member(key(n).peer_id, Role.USER, "MLKEM768_X25519", hybrid) for n in range(2, 200)]
    with pytest.raises(ValueError, match="at most"):
        new_group(owner, "too large", members, now_ms=NOW, nonce=bytes(16))
    assert len(new_group(owner, "fits", members[:100], now_ms=NOW, nonce=bytes(16)).encode())


def test_a_single_frame_answer_is_read_as_the_last_page() -> None:
    state = grown_chain(3)
    whole = {
        "genesis": state.genesis.to_cbor(),
        "rosters": [p.to_cbor() for p in state.roster_packets],
    }
    assert [p.message.epoch for p in read_roster_page(whole, 0).packets] == [0, 1, 2]
    later = read_roster_page(whole, 2)
    assert ([p.message.epoch for p in later.packets], later.next) == ([2], None)
    session = ChainFetch(state.group_id)
    assert not session.take(whole)
    assert session.state is not None
    assert session.state.current_epoch == 3
