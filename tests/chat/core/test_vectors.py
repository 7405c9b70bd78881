"""The committed chat vectors, specs/vectors/chat/*.json (specs/chat.md §10).

Each file is decoded and re-encoded, its JSON view recomputed, and every derived value
(group id, message hash, signatures, certificate, decryption, wrapped keys) checked from the
file's own bytes with the library; then the generator's ``--check`` must find the committed files
equal to a regeneration.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Final

import attrs
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from p2pchat.chat.core import cbor, crypto, merkle
from p2pchat.chat.core.certificate import batch_signing_bytes
from p2pchat.chat.core.commitment import CloseCommitment, close_signing_bytes
from p2pchat.chat.core.genesis import SignedGenesis
from p2pchat.chat.core.group_state import GroupState
from p2pchat.chat.core.packet import (
    Packet,
    Vote,
    sha256,
    verify_author,
    verify_vote,
    vote_signing_bytes,
)
from p2pchat.chat.core.packet_json import (
    packet_from_json,
    packet_to_json,
    to_json_view,
)
from p2pchat.chat.core.prune import check_tombstone
from p2pchat.chat.core.quorum import verify_certificate
from p2pchat.chat.core.roster import Role
from p2pchat.chat.core.roster_update import RosterUpdate
from p2pchat.chat.core.validate import check_for_delivery
from p2pchat.chat.core.wire import (
    NEED_DATA,
    FrameReader,
    Query,
    Response,
    encode_envelope,
    parse_envelope,
)
from p2pchat.errors import ProtocolError
from p2pchat.identity import KeyPair, PeerID

ROOT: Final = Path(__file__).resolve().parents[3]
VECTORS: Final = ROOT / "specs" / "vectors" / "chat"
GENERATOR: Final = ROOT / "tools" / "gen_chat_vectors.py"
FILES: Final = sorted(p.name for p in VECTORS.glob("*.json"))
#: Kept by hand from reference data (checked by test_merkle.py), not by the generator.
FOREIGN: Final = frozenset({"merkle.json"})


@cache
def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


def read_frame(frame: bytes) -> dict[str, Any]:
    reader = FrameReader()
    reader.receive_data(frame)
    reader.receive_eof()
    value = reader.next_event()
    assert value is not NEED_DATA
    assert isinstance(value, dict)
    assert reader.next_event() is NEED_DATA
    assert reader.ended
    return value


def genesis() -> SignedGenesis:
    return SignedGenesis.decode(bytes.fromhex(load("genesis.json")["cbor_hex"]))


def packet(name: str) -> Packet:
    return Packet.decode(bytes.fromhex(load(name)["cbor_hex"]))


def state() -> GroupState:
    return GroupState.from_genesis(genesis())


# -- every file ------------------------------------------------------------------------------------

# A file's decoder: the re-encoding of what it decoded, and that value's CBOR map.
Decoded = tuple[bytes, dict[str, Any]]


def _decode_genesis(data: bytes) -> Decoded:
    signed = SignedGenesis.decode(data)
    return signed.encode(), signed.to_cbor()


def _decode_packet(data: bytes) -> Decoded:
    decoded = Packet.decode(data)
    return decoded.encode(), decoded.to_cbor()


def _decode_vote(data: bytes) -> Decoded:
    vote = Vote.from_cbor(cbor.loads(data, max_size=4096))
    return cbor.dumps(vote.to_cbor()), vote.to_cbor()


DECODERS: Final[dict[str, Callable[[bytes], Decoded]]] = {
    "close_vote.json": _decode_vote,
    "genesis.json": _decode_genesis,
    "text_message.json": _decode_packet,
    "roster_message.json": _decode_packet,
    "pruned_message.json": _decode_packet,
    "roster_delta.json": _decode_packet,
}


def test_the_vector_directory_holds_the_expected_files() -> None:
    assert FILES == [
        "close_vote.json",
        "genesis.json",
        "merkle.json",
        "mrat_query.json",
        "mrat_response.json",
        "mratb_query.json",
        "mratb_response.json",
        "pruned_message.json",
        "roster_delta.json",
        "roster_message.json",
        "smsgb_query.json",
        "smsgb_response.json",
        "text_message.json",
    ]


@pytest.mark.parametrize("name", [f for f in FILES if f not in FOREIGN])
def test_every_file_decodes_reencodes_and_has_its_json_view(name: str) -> None:
    vector = load(name)
    assert vector["description"]
    data = bytes.fromhex(vector["cbor_hex"])
    if "frame_hex" in vector:
        frame = bytes.fromhex(vector["frame_hex"])
        value = read_frame(frame)
        envelope = parse_envelope(value)
        assert encode_envelope(envelope) == frame
        assert frame.endswith(data)
        cbor_map = envelope.to_map()
    else:
        reencoded, cbor_map = DECODERS[name](data)
        assert reencoded == data
    assert to_json_view(cbor_map) == vector["json"]


@pytest.mark.parametrize(
    "name", ["text_message.json", "roster_message.json", "pruned_message.json", "roster_delta.json"]
)
def test_packet_json_view_round_trips(name: str) -> None:
    vector = load(name)
    decoded = packet(name)
    assert packet_to_json(decoded) == vector["json"]
    assert packet_from_json(vector["json"]) == decoded


# -- genesis ---------------------------------------------------------------------------------------


def test_genesis_signature_and_group_id() -> None:
    vector = load("genesis.json")
    signed = genesis()
    assert signed.verify()
    assert signed.genesis.encode().hex() == vector["genesis_cbor_hex"]
    assert sha256(bytes.fromhex(vector["genesis_cbor_hex"])).hex() == vector["group_id"]
    assert signed.group_id.hex() == vector["group_id"]
    roster = signed.genesis.roster
    assert roster.epoch == 0
    assert roster.quorum == 2
    assert len(roster.ratifiers) == 3
    assert signed.genesis.owner in roster.ratifiers


def test_genesis_people_keys_match_the_roster() -> None:
    roster = genesis().genesis.roster
    people = load("genesis.json")["people"]
    for person in people:
        keypair = KeyPair.from_seed(bytes.fromhex(person["seed"]))
        assert str(keypair.peer_id) == person["peer"]
        hpke = crypto.HpkeKeyPair.from_private_bytes(
            person["kem"], bytes.fromhex(person["hpke_private"])
        )
        assert hpke.public_bytes().hex() == person["hpke_public"]
        member = roster.member(keypair.peer_id)
        if person["name"] == "viewer":
            assert member is None  # joins in epoch 1
            continue
        assert member is not None
        assert member.role is Role(person["role"])
        assert (member.kem, member.hpke) == (person["kem"], hpke.public_bytes())
    assert str(genesis().genesis.owner) == people[0]["peer"]


# -- the text message ------------------------------------------------------------------------------


def test_text_message_hashes_and_signature() -> None:
    vector = load("text_message.json")
    decoded = packet("text_message.json")
    message = decoded.message
    assert message.group_id.hex() == vector["group_id"] == load("genesis.json")["group_id"]
    assert message.encode().hex() == vector["message_cbor_hex"]
    assert sha256(bytes.fromhex(vector["message_cbor_hex"])).hex() == vector["message_hash"]
    assert decoded.message_hash.hex() == vector["message_hash"]
    assert decoded.check_hashes()
    assert verify_author(decoded)
    assert message.message_type == "text"
    assert message.epoch == 0


def test_text_message_certificate_verifies_against_the_genesis_roster() -> None:
    decoded = packet("text_message.json")
    roster = genesis().genesis.roster
    certificate = decoded.certificate
    assert certificate is not None
    assert len(certificate.votes) == 2
    assert {v.ratifier for v in certificate.votes} <= roster.ratifiers
    assert verify_certificate(certificate, roster, decoded.message.group_id, decoded.message_hash)
    # One vote alone is short of the quorum of 2.
    single = type(certificate)(certificate.epoch, certificate.votes[:1])
    assert not verify_certificate(single, roster, decoded.message.group_id, decoded.message_hash)
    assert check_for_delivery(decoded, state(), have=lambda _h: True) is None


def test_text_message_decrypts_with_the_recorded_keys() -> None:
    vector = load("text_message.json")
    decoded = packet("text_message.json")
    epoch_key = bytes.fromhex(vector["epoch_key"])
    assert crypto.decrypt_packet(decoded, epoch_key=epoch_key) == vector["plaintext"].encode()
    # aes_key = nonce || AES-256-GCM(K_e, nonce, k, aad): the recorded nonce and content key.
    nonce, wrapped = decoded.aes_key[:12], decoded.aes_key[12:]
    assert nonce.hex() == vector["key_nonce"]
    aad = crypto.content_key_aad(decoded.message.group_id, decoded.message.epoch)
    assert AESGCM(epoch_key).decrypt(nonce, wrapped, aad).hex() == vector["content_key"]
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt_packet(decoded, epoch_key=bytes(32))


# -- the roster message ----------------------------------------------------------------------------


def test_pruned_message_is_the_text_message_without_its_content_key() -> None:
    vector = load("pruned_message.json")
    pruned = packet("pruned_message.json")
    text = packet("text_message.json")
    assert pruned.pruned
    assert pruned.aes_key == b""
    assert pruned.iv == b""
    assert pruned.message == text.message
    assert pruned.message_hash == text.message_hash
    assert pruned.signature == text.signature
    assert pruned.certificate == text.certificate
    assert pruned.message_hash.hex() == vector["message_hash"]
    assert pruned.message.encode().hex() == vector["message_cbor_hex"]
    assert pruned.message.artifact.key_hash.hex() == vector["key_hash"]
    assert pruned.tombstone is not None
    assert pruned.tombstone.message_hash.hex() == vector["tombstone_hash"]
    assert pruned.tombstone.message.ref_hash == text.message_hash
    assert pruned.check_hashes()
    assert verify_author(pruned)
    assert check_tombstone(pruned, state()) is None
    assert check_for_delivery(pruned, state(), have=lambda h: False) is None
    with pytest.raises(ProtocolError):
        crypto.decrypt_packet(
            pruned, epoch_key=bytes.fromhex(load("text_message.json")["epoch_key"])
        )


def test_roster_message_extends_the_genesis_chain() -> None:
    vector = load("roster_message.json")
    decoded = packet("roster_message.json")
    text_hash = bytes.fromhex(load("text_message.json")["message_hash"])
    assert decoded.message_hash.hex() == vector["message_hash"]
    assert decoded.message.parents == (text_hash,)
    assert decoded.check_hashes()
    assert verify_author(decoded)
    assert decoded.certificate is not None
    roster_0 = genesis().genesis.roster
    assert verify_certificate(
        decoded.certificate, roster_0, decoded.message.group_id, decoded.message_hash, closing=True
    )
    # Closing votes certify a roster message only (specs/chat.md §14).
    assert not verify_certificate(
        decoded.certificate, roster_0, decoded.message.group_id, decoded.message_hash
    )
    chain = GroupState.from_chain(genesis(), [decoded])
    assert chain.current_epoch == 1
    update = RosterUpdate.decode(decoded.message.artifact.data)
    assert chain.current_roster == update.roster
    assert to_json_view(update.to_cbor()) == vector["update_json"]
    viewer = next(p for p in load("genesis.json")["people"] if p["name"] == "viewer")
    assert chain.role(PeerID.from_string(viewer["peer"]), 1) is Role.VIEWER


def test_roster_message_records_its_wrapped_keys() -> None:
    vector = load("roster_message.json")
    update = RosterUpdate.decode(packet("roster_message.json").message.artifact.data)
    listed = [
        (what, str(w.peer), w.epoch, w.enc.hex())
        for what, keys in (("keys", update.keys), ("history_keys", update.history_keys))
        for w in keys
    ]
    recorded = [(e["list"], e["peer"], e["epoch"], e["enc"]) for e in vector["wrapped_keys"]]
    assert recorded == listed
    assert len(update.keys) == len(update.roster.members)
    assert [w.epoch for w in update.history_keys] == [0]


def test_the_recorded_wrapped_keys_unwrap() -> None:
    vector = load("roster_message.json")
    group_id = bytes.fromhex(vector["group_id"])
    roster_1 = RosterUpdate.decode(packet("roster_message.json").message.artifact.data).roster
    for entry in vector["wrapped_keys"]:
        peer = PeerID.from_string(entry["peer"])
        keypair = crypto.HpkeKeyPair.from_private_bytes(
            entry["kem"], bytes.fromhex(entry["hpke_private"])
        )
        member = roster_1.member(peer)
        assert member is not None
        assert member.hpke == keypair.public_bytes()
        enc = bytes.fromhex(entry["enc"])
        assert len(enc) == crypto.WRAPPED_EPOCH_KEY_SIZES[entry["kem"]]
        key = crypto.unwrap_epoch_key(
            enc, keypair=keypair, group_id=group_id, epoch=entry["epoch"], peer=peer
        )
        assert key.hex() == vector["epoch_keys"][str(entry["epoch"])]
        with pytest.raises(ProtocolError):  # the binding names this member and epoch only
            crypto.unwrap_epoch_key(
                enc, keypair=keypair, group_id=group_id, epoch=entry["epoch"] + 1, peer=peer
            )
    assert vector["epoch_keys"]["0"] == load("text_message.json")["epoch_key"]


# -- the mrat frames -------------------------------------------------------------------------------


def test_mrat_query_carries_the_text_message() -> None:
    vector = load("mrat_query.json")
    query = parse_envelope(read_frame(bytes.fromhex(vector["frame_hex"])))
    assert isinstance(query, Query)
    assert (query.code, query.rid) == ("mrat", 1)
    assert query.body["group_id"].hex() == vector["group_id"]
    carried = Packet.from_cbor(query.body["packet"])
    text = packet("text_message.json")
    assert carried.certificate is None
    assert text.certificate is not None
    assert carried.with_certificate(text.certificate) == text
    assert carried.message_hash.hex() == vector["message_hash"]
    assert verify_author(carried)


def test_mrat_response_carries_a_valid_vote() -> None:
    vector = load("mrat_response.json")
    response = parse_envelope(read_frame(bytes.fromhex(vector["frame_hex"])))
    assert isinstance(response, Response)
    assert (response.code, response.rid, response.ok, response.reason) == ("mratR", 1, True, None)
    vote = Vote.from_cbor(response.body["vote"])
    group_id = bytes.fromhex(vector["group_id"])
    message_hash = bytes.fromhex(vector["message_hash"])
    signed = vote_signing_bytes(group_id, vector["epoch"], message_hash)
    assert signed.hex() == vector["vote_signing_bytes_hex"]
    assert verify_vote(vote, group_id, vector["epoch"], message_hash)
    assert not verify_vote(vote, group_id, vector["epoch"] + 1, message_hash)
    assert vote.ratifier == genesis().genesis.owner
    text = packet("text_message.json")
    assert text.certificate is not None
    assert vote in text.certificate.votes


def test_mratb_query_carries_a_chain_with_a_forged_message_between() -> None:
    vector = load("mratb_query.json")
    query = parse_envelope(read_frame(bytes.fromhex(vector["frame_hex"])))
    assert isinstance(query, Query)
    assert (query.code, query.rid) == ("mratb", 2)
    packets = [Packet.from_cbor(p) for p in query.body["packets"]]
    assert [p.message_hash.hex() for p in packets] == vector["message_hashes"]
    second, forged, third = packets
    assert [verify_author(p) for p in packets] == [True, False, True]
    assert second.message.parents == (packet("text_message.json").message_hash,)
    assert third.message.parents == (second.message_hash,)
    assert all(p.check_hashes() and p.certificate is None for p in packets)
    assert forged.message_hash not in vector["message_hashes"][::2]


def test_mratb_response_votes_for_the_batch_with_one_signature() -> None:
    vector = load("mratb_response.json")
    response = parse_envelope(read_frame(bytes.fromhex(vector["frame_hex"])))
    assert isinstance(response, Response)
    assert (response.code, response.rid, response.ok) == ("mratbR", 2, True)
    first, refused, last = response.body["results"]
    assert refused == {"reason": "bad signature"}
    votes = [Vote.from_cbor(first["vote"]), Vote.from_cbor(last["vote"])]
    group_id = bytes.fromhex(vector["group_id"])
    hashes = [bytes.fromhex(h) for h in vector["batch_hashes"]]
    assert hashes == [bytes.fromhex(h) for h in load("mratb_query.json")["message_hashes"][::2]]
    root = merkle.root(hashes)
    assert root.hex() == vector["root"]
    signed = batch_signing_bytes(group_id, vector["epoch"], 2, root)
    assert signed.hex() == vector["signing_bytes_hex"]
    assert votes[0].sig == votes[1].sig  # one signature for the batch
    for index, (vote, message_hash) in enumerate(zip(votes, hashes, strict=True)):
        assert vote.ratifier == genesis().genesis.owner
        assert vote.batch is not None
        assert (vote.batch.size, vote.batch.index) == (2, index)
        assert verify_vote(vote, group_id, vector["epoch"], message_hash)
        assert not verify_vote(vote, group_id, vector["epoch"], hashes[1 - index])


def test_smsgb_delivers_the_batch_certified_by_batch_votes() -> None:
    vector = load("smsgb_query.json")
    query = parse_envelope(read_frame(bytes.fromhex(vector["frame_hex"])))
    assert isinstance(query, Query)
    assert (query.code, query.rid) == ("smsgb", 3)
    assert "relay" not in query.body
    packets = [Packet.from_cbor(p) for p in query.body["packets"]]
    assert [p.message_hash.hex() for p in packets] == vector["message_hashes"]
    assert vector["message_hashes"] == load("mratb_response.json")["batch_hashes"]
    state = GroupState.from_genesis(genesis())
    held = {packet("text_message.json").message_hash}
    for p in packets:  # in order: the second names the first
        assert p.certificate is not None
        assert all(v.batch is not None for v in p.certificate.votes)
        assert verify_certificate(
            p.certificate, state.current_roster, state.group_id, p.message_hash
        )
        assert check_for_delivery(p, state, have=held.__contains__) is None
        held.add(p.message_hash)
    response = parse_envelope(read_frame(bytes.fromhex(load("smsgb_response.json")["frame_hex"])))
    assert isinstance(response, Response)
    assert (response.code, response.rid, response.ok) == ("smsgbR", 3, True)
    assert response.body == {"results": [{"duplicate": True}, {}]}


def test_close_vote_signs_its_commitment() -> None:
    vector = load("close_vote.json")
    raw = bytes.fromhex(vector["cbor_hex"])
    vote = Vote.from_cbor(cbor.loads(raw, max_size=4096))
    assert cbor.dumps(vote.to_cbor()) == raw
    assert to_json_view(vote.to_cbor()) == vector["json"]
    assert vote.close is not None
    assert cbor.dumps(vote.close.to_cbor()).hex() == vector["close_cbor_hex"]
    assert vote.close.digest().hex() == vector["close_digest"]
    group_id = bytes.fromhex(vector["group_id"])
    message_hash = bytes.fromhex(vector["message_hash"])
    signed = close_signing_bytes(group_id, vector["epoch"], message_hash, vote.close)
    assert signed.hex() == vector["signing_bytes_hex"]
    assert verify_vote(vote, group_id, vector["epoch"], message_hash)
    # The commitment is signed: changing it, or dropping it, breaks the vote.
    grown = CloseCommitment(vote.close.heads, tuple(sorted({*vote.close.pending, bytes(32)})))
    assert not verify_vote(attrs.evolve(vote, close=grown), group_id, 0, message_hash)
    assert not verify_vote(attrs.evolve(vote, close=None), group_id, 0, message_hash)
    text = packet("text_message.json")
    assert vote.close.heads == (text.message_hash,)
    roster = packet("roster_message.json")
    assert roster.certificate is not None
    assert vote in roster.certificate.votes
    assert roster.message_hash == message_hash


# -- the generator ---------------------------------------------------------------------------------


def run_generator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATOR), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def test_generator_check_passes_on_the_committed_files() -> None:
    done = run_generator("--check")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def _copy_vectors(tmp_path: Path) -> Path:
    directory = tmp_path / "chat"
    shutil.copytree(VECTORS, directory)
    return directory


def test_generator_check_fails_on_a_changed_file(tmp_path: Path) -> None:
    directory = _copy_vectors(tmp_path)
    path = directory / "text_message.json"
    vector = json.loads(path.read_text())
    vector["message_hash"] = "00" * 32
    path.write_text(json.dumps(vector, indent=2) + "\n")
    (directory / "extra.json").write_text("{}\n")
    done = run_generator("--check", "--dir", str(directory))
    assert done.returncode == 1
    assert "text_message.json: differs" in done.stderr
    assert "extra.json: not made by this generator" in done.stderr


def test_generator_check_fails_on_a_wrapped_key_that_does_not_unwrap(tmp_path: Path) -> None:
    directory = _copy_vectors(tmp_path)
    path = directory / "roster_message.json"
    vector = json.loads(path.read_text())
    enc = bytearray.fromhex(vector["wrapped_keys"][1]["enc"])
    enc[-1] ^= 1
    vector["wrapped_keys"][1]["enc"] = enc.hex()
    path.write_text(json.dumps(vector, indent=2) + "\n")
    done = run_generator("--check", "--dir", str(directory))
    assert done.returncode == 1
    assert "does not unwrap" in done.stderr


def test_generator_writes_what_check_accepts(tmp_path: Path) -> None:
    directory = _copy_vectors(tmp_path)
    (directory / "mrat_query.json").unlink()
    assert run_generator("--check", "--dir", str(directory)).returncode == 1
    written = run_generator("--dir", str(directory))
    assert written.returncode == 0, written.stderr
    for name in (
        f for f in FILES if f not in FOREIGN
    ):  # the recorded wrapped keys are reused, so nothing else changes
        assert (directory / name).read_text() == (VECTORS / name).read_text()
    assert run_generator("--check", "--dir", str(directory)).returncode == 0
