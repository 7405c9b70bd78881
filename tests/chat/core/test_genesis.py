"""Genesis, its signature and the group id (specs/chat.md §3, §5)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from chat.core.groups import (
    NONCE,
    NOW,
    key,
    make_group,
    member,
)
from p2pchat.chat.core import cbor
from p2pchat.chat.core.genesis import SignedGenesis, new_group
from p2pchat.chat.core.group_state import GroupState
from p2pchat.chat.core.packet import sha256
from p2pchat.chat.core.roster import (
    Role,
    RosterError,
)
from p2pchat.errors import RemoteProtocolError

# -- genesis -------------------------------------------------------------------------------------


def test_new_group_signs_a_verifiable_genesis() -> None:
    group = make_group()
    signed = group.signed
    genesis = signed.genesis
    assert genesis.v == 1
    assert genesis.owner == group.owner.peer_id
    assert genesis.created == NOW
    assert genesis.nonce == NONCE
    assert genesis.roster.epoch == 0
    assert genesis.roster.quorum == 2
    assert signed.verify()
    assert group.owner.public_key.verify(signed.sig, b"p2pchat/genesis/v1" + genesis.encode())
    assert signed.group_id == sha256(cbor.dumps(genesis.to_cbor()))
    assert len(signed.group_id) == 32


def test_signed_genesis_round_trip() -> None:
    signed = make_group(quorum=3).signed
    data = signed.encode()
    again = SignedGenesis.decode(data)
    assert again == signed
    assert again.encode() == data
    assert again.group_id == signed.group_id
    assert again.genesis.roster.quorum == 3


def test_genesis_signature_tampering_is_detected() -> None:
    signed = make_group().signed
    bad_sig = attrs.evolve(signed, sig=bytes(64))
    assert not bad_sig.verify()
    renamed = attrs.evolve(signed, genesis=attrs.evolve(signed.genesis, name="other"))
    assert not renamed.verify()
    assert renamed.group_id != signed.group_id
    with pytest.raises(RosterError) as info:
        GroupState.from_genesis(bad_sig)
    assert info.value.hint == "bad signature"
    assert isinstance(info.value, RemoteProtocolError)


def test_only_the_owner_signs_the_genesis() -> None:
    genesis = make_group().signed.genesis
    with pytest.raises(ValueError, match="owner"):
        SignedGenesis.sign(key(2), genesis)


def test_owner_must_be_a_ratifier() -> None:
    owner = key(1)
    members = [member(owner, Role.USER), member(key(2), Role.RATIFIER)]
    with pytest.raises(ValueError, match="owner must be a ratifier"):
        new_group(owner, "g", members, now_ms=NOW, nonce=NONCE)
    with pytest.raises(ValueError, match="owner must be a ratifier"):
        new_group(owner, "g", members[1:], now_ms=NOW, nonce=NONCE)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"v": 2}, "version"),
        ({"name": "x" * 129}, "128"),
        ({"nonce": bytes(15)}, "16 bytes"),
    ],
)
def test_genesis_refuses_invalid(change: dict[str, Any], error: str) -> None:
    genesis = make_group().signed.genesis
    with pytest.raises(ValueError, match=error):
        attrs.evolve(genesis, **change)


def test_genesis_roster_must_be_epoch_zero() -> None:
    genesis = make_group().signed.genesis
    roster = attrs.evolve(genesis.roster, epoch=1)
    with pytest.raises(ValueError, match="epoch 0"):
        attrs.evolve(genesis, roster=roster)


def test_new_group_options() -> None:
    owner = key(1)
    members = [member(key(n), Role.RATIFIER) for n in range(1, 5)]
    signed = new_group(owner, "g", members, quorum=4, history="since_join", now_ms=NOW, nonce=NONCE)
    assert signed.genesis.roster.quorum == 4
    assert signed.genesis.roster.history == "since_join"
    assert signed.genesis.name == "g"
