"""Key sets of roster deltas (specs/chat.md §20): the commitment, pages for ratifiers, a
member's own entries with proofs, and what is refused; the vector of roster_delta.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chat.core.groups import key
from p2pchat.chat.core import cbor, crypto, merkle
from p2pchat.chat.core.keyset import (
    MAX_MY_KEYS,
    KeySet,
    KeySetError,
    KeySetFetch,
    KeySetRef,
    check_key_set,
    read_my_keys,
)
from p2pchat.chat.core.packet_json import to_json_view
from p2pchat.chat.core.roster import KEM_X25519, Member, Role, Roster
from p2pchat.chat.core.roster_update import WrappedKey, epoch_key_check
from p2pchat.identity import PeerID

VECTORS = Path(__file__).resolve().parents[3] / "specs" / "vectors" / "chat"
PEERS = [key(n).peer_id for n in range(1, 8)]


def roster(epoch: int = 3) -> Roster:
    return Roster(epoch, [Member(p, Role.RATIFIER, KEM_X25519, bytes([9]) * 32) for p in PEERS])


def keyset(epoch: int = 3, enc_size: int = 80) -> KeySet:
    """Every member's key of ``epoch``, and the first member's keys of the epochs before."""
    keys = [WrappedKey(p, epoch, bytes([i]) * enc_size) for i, p in enumerate(PEERS)]
    keys += [WrappedKey(PEERS[0], e, bytes([100 + e]) * enc_size) for e in range(epoch)]
    return KeySet(tuple(keys))


def test_a_set_is_sorted_committed_and_decoded_back() -> None:
    ks = keyset()
    assert [k.sort_key() for k in ks.keys] == sorted(k.sort_key() for k in ks.keys)
    ref = ks.ref()
    assert ref.count == len(PEERS) + 3
    assert ref.root == merkle.root([cbor.dumps(k.to_cbor()) for k in ks.keys])
    assert KeySet.decode(ks.encode()) == ks
    check_key_set(ks, ref, roster())
    with pytest.raises(ValueError, match="twice"):
        KeySet((ks.keys[0], ks.keys[0]))
    with pytest.raises(ValueError, match=r"1\.\."):
        KeySet(())
    unsorted = cbor.dumps([k.to_cbor() for k in reversed(ks.keys)])
    with pytest.raises(KeySetError, match="sorted"):
        KeySet.decode(unsorted)


def test_a_set_that_breaks_its_commitment_or_the_roster_is_refused() -> None:
    ks = keyset()
    ref = ks.ref()
    with pytest.raises(KeySetError, match="root and count"):
        check_key_set(ks, KeySetRef(ref.root, ref.count + 1), roster())
    stranger = KeySet((*ks.keys, WrappedKey(key(20).peer_id, 3, b"x" * 80)))
    with pytest.raises(KeySetError, match="non-member"):
        check_key_set(stranger, stranger.ref(), roster())
    later = KeySet((*ks.keys, WrappedKey(PEERS[1], 4, b"x" * 80)))
    with pytest.raises(KeySetError, match="after"):
        check_key_set(later, later.ref(), roster())


def test_a_ratifier_pages_a_set_in_and_refuses_a_bad_page() -> None:
    ks = keyset(enc_size=1168)  # hybrid-sized entries
    fetch = KeySetFetch(ks.ref())
    while fetch.take(ks.page(fetch.next_from, max_bytes=4000)):
        pass
    assert fetch.pages == 4  # 3 entries of about 1.2 KB a page
    assert fetch.result(roster()) == ks
    first = ks.page(0, max_bytes=4000)
    bad = {
        "empty": {"entries": [], "next": None},
        "next not after it": {"entries": first["entries"], "next": 7},
        "ends early": {"entries": first["entries"], "next": None},
        "too many": {"entries": first["entries"] * 4, "next": None},
    }
    for what, page in bad.items():
        with pytest.raises(KeySetError) as info:
            KeySetFetch(ks.ref()).take(page)
        assert info.value.hint == "bad page", what
    # Pages of another set, of the same count: the root does not match.
    other = keyset(enc_size=81)
    fetch = KeySetFetch(ks.ref())
    while fetch.take(other.page(fetch.next_from)):
        pass
    with pytest.raises(KeySetError, match="root"):
        fetch.result(roster())


def test_a_member_gets_its_own_entries_and_a_forged_proof_is_refused() -> None:
    ks = keyset()
    ref = ks.ref()
    me = PEERS[0]
    body = ks.mine(me)
    entries = read_my_keys(body, ref, me)
    assert [k.epoch for k in entries] == [0, 1, 2, 3]
    assert ks.mine(key(20).peer_id) == {"index": 0, "entries": [], "proofs": []}
    # Another member's entries with their own proofs are not ours.
    with pytest.raises(KeySetError, match="another peer"):
        read_my_keys(ks.mine(PEERS[1]), ref, me)
    # A forged entry (another enc), a shifted index, a proof altered. (The count is not
    # proved by a path, specs/chat.md §19: the delta that holds the root signs it.)
    forged = {**body, "entries": [{**body["entries"][0], "enc": b"forged"}, *body["entries"][1:]]}
    shifted = {**body, "index": body["index"] + 1}
    altered = {**body, "proofs": [[bytes(32), *body["proofs"][0][1:]], *body["proofs"][1:]]}
    for what, answer, ref_used in (
        ("forged", forged, ref),
        ("shifted", shifted, ref),
        ("altered", altered, ref),
        ("outside", body, KeySetRef(ref.root, body["index"] + 1)),
    ):
        with pytest.raises(KeySetError) as info:
            read_my_keys(answer, ref_used, me)
        assert info.value.hint == "bad proof", what
    with pytest.raises(KeySetError) as info:
        read_my_keys({"index": 0, "entries": "x", "proofs": []}, ref, me)
    assert info.value.hint == "malformed"


def test_the_key_set_vector() -> None:
    vector = json.loads((VECTORS / "roster_delta.json").read_text())
    group_id = bytes.fromhex(vector["group_id"])
    ks = KeySet.decode(bytes.fromhex(vector["keyset_cbor_hex"]))
    ref = ks.ref()
    assert ref.root.hex() == vector["keyset_root"]
    assert ref.count == vector["keyset_count"] == 7  # 5 members' epoch-2 keys, 2 history keys
    delta = cbor.loads(bytes.fromhex(vector["delta_cbor_hex"]), max_size=1 << 20)
    assert KeySetRef.from_cbor(delta["keyset"]) == ref
    newcomer = vector["newcomer"]
    me = PeerID.from_string(newcomer["peer"])
    hpke = crypto.HpkeKeyPair.from_private_bytes(
        newcomer["kem"], bytes.fromhex(newcomer["hpke_private"])
    )
    body = ks.mine(me)
    assert to_json_view(body) == vector["newcomer_keys"]
    entries = read_my_keys(body, ref, me)
    assert [e.epoch for e in entries] == [0, 1, 2]
    new_key = crypto.unwrap_epoch_key(
        entries[2].enc, keypair=hpke, group_id=group_id, epoch=2, peer=me
    )
    assert new_key.hex() == vector["epoch_key"]
    checks = {c["epoch"]: c["check"] for c in delta["key_checks"]}
    assert checks[2] == epoch_key_check(group_id, 2, new_key)


def test_a_member_with_more_entries_than_an_answer_holds_gets_the_newest() -> None:
    me = PEERS[0]
    epoch = MAX_MY_KEYS + 10
    keys = [WrappedKey(me, e, bytes([e % 256]) * 80) for e in range(epoch + 1)]
    ks = KeySet((*keys, WrappedKey(PEERS[1], epoch, b"x" * 80)))
    entries = read_my_keys(ks.mine(me), ks.ref(), me)
    assert len(entries) == MAX_MY_KEYS
    assert entries[-1].epoch == epoch  # the new epoch's key is always given
    assert entries[0].epoch == epoch + 1 - MAX_MY_KEYS
