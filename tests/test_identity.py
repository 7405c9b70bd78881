"""Keys and peer IDs against the libp2p/specs peer-ids.md vectors."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.errors import DecodeError
from p2pchat.identity import (
    KeyFileError,
    KeyPair,
    KeyType,
    PeerID,
    PublicKey,
    UnsupportedKeyError,
    load_key_file,
    save_key_file,
)
from p2pchat.multibase import b32decode, b58decode, b58encode

# libp2p/specs peer-ids/peer-ids.md "Test vectors" (hex protobufs), also in specs/identity.md.
ED25519_PRIVATE = bytes.fromhex(
    "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d"
    "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
ED25519_PUBLIC = bytes.fromhex(
    "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
ED25519_PEER_ID = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
SECP256K1_PRIVATE = bytes.fromhex(
    "0802122053DADF1D5A164D6B4ACDB15E24AA4C5B1D3461BDBD42ABEDB0A4404D56CED8FB"
)
SECP256K1_PUBLIC = bytes.fromhex(
    "08021221037777e994e452c21604f91de093ce415f5432f701dd8cd1a7a6fea0e630bfca99"
)
ECDSA_PRIVATE = bytes.fromhex(
    "08031279307702010104203E5B1FE9712E6C314942A750BD67485DE3C1EFE85B1BFB520AE8F9AE3D"
    "FA4A4CA00A06082A8648CE3D030107A14403420004DE3D300FA36AE0E8F5D530899D83ABAB44ABF3"
    "161F162A4BC901D8E6ECDA020E8B6D5F8DA30525E71D6851510C098E5C47C646A597FB4DCEC034E9"
    "F77C409E62"
)
ECDSA_PUBLIC = bytes.fromhex(
    "0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004de3d300fa36ae0e8f5"
    "d530899d83abab44abf3161f162a4bc901d8e6ecda020e8b6d5f8da30525e71d6851510c098e5c47"
    "c646a597fb4dcec034e9f77c409e62"
)

KEY_VECTORS = [
    pytest.param(ED25519_PRIVATE, ED25519_PUBLIC, KeyType.Ed25519, id="ed25519"),
    pytest.param(SECP256K1_PRIVATE, SECP256K1_PUBLIC, KeyType.Secp256k1, id="secp256k1"),
    pytest.param(ECDSA_PRIVATE, ECDSA_PUBLIC, KeyType.ECDSA, id="ecdsa"),
]


@pytest.mark.parametrize(("private", "public", "key_type"), KEY_VECTORS)
def test_private_key_vector_derives_public_key_vector(
    private: bytes, public: bytes, key_type: KeyType
) -> None:
    pair = KeyPair.from_protobuf(private)
    assert pair.public_key.key_type is key_type
    assert pair.public_key.to_protobuf() == public
    assert PublicKey.from_protobuf(public) == pair.public_key


@pytest.mark.parametrize(("private", "public", "key_type"), KEY_VECTORS)
def test_signatures_verify_for_every_key_type(
    private: bytes, public: bytes, key_type: KeyType
) -> None:
    pair = KeyPair.from_protobuf(private)
    signature = pair.sign(b"message")
    assert pair.public_key.verify(signature, b"message")
    assert not pair.public_key.verify(signature, b"other message")
    assert not pair.public_key.verify(b"\x00" * len(signature), b"message")


def test_ed25519_private_key_round_trips() -> None:
    assert KeyPair.from_protobuf(ED25519_PRIVATE).to_protobuf() == ED25519_PRIVATE


def test_ed25519_peer_id_vector() -> None:
    peer = PeerID.from_public_key(PublicKey.from_protobuf(ED25519_PUBLIC))
    assert str(peer) == ED25519_PEER_ID
    assert peer.to_bytes() == bytes((0x00, len(ED25519_PUBLIC))) + ED25519_PUBLIC
    assert peer.extract_public_key() == PublicKey.from_protobuf(ED25519_PUBLIC)


def test_ecdsa_peer_id_is_sha256_multihash() -> None:
    # 95-byte protobuf > 42 bytes: hashed (peer-ids.md "Peer Ids").
    peer = PeerID.from_public_key(PublicKey.from_protobuf(ECDSA_PUBLIC))
    assert peer.to_bytes()[:2] == b"\x12\x20"
    assert str(peer).startswith("Qm")
    assert peer.extract_public_key() is None


def test_peer_id_parses_base58_and_cid_forms() -> None:
    peer = PeerID.from_string(ED25519_PEER_ID)
    assert PeerID.from_string(peer.to_cid()) == peer
    assert peer.to_cid().startswith("b")
    # peer-ids.md examples
    sha = PeerID.from_string("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
    cid = PeerID.from_string("bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe")
    assert sha == cid
    assert str(PeerID.from_string("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")) == (
        "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "12D3KooW0000",  # '0' is not base58
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5",  # truncated
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # dag-pb CID, not a key
    ],
)
def test_invalid_peer_id_text_raises_decode_error(text: str) -> None:
    with pytest.raises(DecodeError):
        PeerID.from_string(text)


def test_generated_keys_sign_and_name_themselves() -> None:
    pair = KeyPair.generate()
    assert pair.peer_id.matches(pair.public_key)
    assert str(pair.peer_id).startswith("12D3KooW")
    assert pair.public_key.verify(pair.sign(b"x"), b"x")
    assert not KeyPair.generate().public_key.verify(pair.sign(b"x"), b"x")


def test_legacy_96_byte_ed25519_private_key_is_accepted_only_when_consistent() -> None:
    body = ED25519_PRIVATE[4:]
    legacy = b"\x08\x01\x12\x60" + body + body[32:]
    assert KeyPair.from_protobuf(legacy).public_key.to_protobuf() == ED25519_PUBLIC
    bad = b"\x08\x01\x12\x60" + body + bytes(32)
    with pytest.raises(DecodeError):
        KeyPair.from_protobuf(bad)


def test_key_file_is_written_0600_and_round_trips(tmp_path: Path) -> None:
    pair = KeyPair.generate()
    path = tmp_path / "identity.key"
    save_key_file(path, pair)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_key_file(path).peer_id == pair.peer_id


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    save_key_file(path, KeyPair.generate())
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key_file(path)


def test_garbage_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a key")
    os.close(fd)
    with pytest.raises(KeyFileError, match="not a libp2p private key"):
        load_key_file(path)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key_file(tmp_path / "missing.key")


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_public_key_decoder_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        PublicKey.from_protobuf(data)


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_private_key_decoder_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        KeyPair.from_protobuf(data)


@given(st.binary(max_size=80))
@settings(max_examples=300)
def test_peer_id_bytes_decoder_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        PeerID.from_bytes(data)


@given(st.text(max_size=80))
@settings(max_examples=300)
def test_peer_id_text_decoder_raises_only_decode_error(text: str) -> None:
    with contextlib.suppress(DecodeError):
        PeerID.from_string(text)


@given(st.binary(max_size=64))
def test_base58_round_trips(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


def test_base32_rejects_non_ascii() -> None:
    with pytest.raises(DecodeError):
        b32decode("é")


def _rsa_public_protobuf(bits: int, exponent: int) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    # A modulus of the right size; its factors do not matter to a public key decoder.
    modulus = (1 << (bits - 1)) | int.from_bytes(os.urandom(bits // 8), "big") | 1
    modulus &= (1 << bits) - 1
    der = (
        rsa.RSAPublicNumbers(exponent, modulus)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return bytes([0x08, 0x00, 0x12]) + _uvarint(len(der)) + der


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def test_rsa_key_with_a_big_public_exponent_is_refused() -> None:
    big_exponent = (1 << 3070) | 1  # the review's ~3,071-bit exponent
    with pytest.raises(UnsupportedKeyError) as info:
        PublicKey.from_protobuf(_rsa_public_protobuf(3072, big_exponent))
    assert "exponent" in str(info.value)


def test_rsa_key_of_1024_bits_is_refused() -> None:
    with pytest.raises(UnsupportedKeyError) as info:
        PublicKey.from_protobuf(_rsa_public_protobuf(1024, 65537))
    assert "1024 bits" in str(info.value)


def test_rsa_key_of_8192_bits_is_refused() -> None:
    with pytest.raises(UnsupportedKeyError):
        PublicKey.from_protobuf(_rsa_public_protobuf(8192, 65537))


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
def test_rsa_keys_of_2048_to_4096_bits_with_e_65537_are_accepted(bits: int) -> None:
    key = PublicKey.from_protobuf(_rsa_public_protobuf(bits, 65537))
    assert key.key_type is KeyType.RSA


def test_ecdsa_key_off_p256_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    der = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(UnsupportedKeyError):
        PublicKey.from_protobuf(bytes([0x08, 0x03, 0x12]) + _uvarint(len(der)) + der)
