"""End-to-end encryption: HPKE-wrapped epoch keys and AES-256-GCM artifacts (specs/chat.md §7).

HPKE encryption draws its ephemeral key internally, so no sender-side vector can be reproduced
through ``cryptography``. The recipient side is deterministic, though: the known-answer tests
below take the ``enc`` and recipient key of published vectors (RFC 9180 A.1 for DHKEM(X25519,
HKDF-SHA256); draft-ietf-hpke-pq for MLKEM768-X25519), recompute the RFC 9180 §5.1 key schedule
independently for our suite (AEAD AES-256-GCM) and our ``info``, and check that
:func:`unwrap_epoch_key` opens the result. The independent key schedule is itself checked
against the published ``key`` / ``base_nonce`` of those vectors.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Final

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.chat.core.crypto import (
    CONTENT_KEY_SIZE,
    DEFAULT_KEM,
    EPOCH_KEY_SIZE,
    IV_SIZE,
    KEM_MLKEM768_X25519,
    KEM_X25519,
    KEMS,
    MAX_PLAINTEXT,
    PRIVATE_KEY_SIZE,
    PUBLIC_KEY_SIZES,
    WRAPPED_CONTENT_KEY_SIZE,
    WRAPPED_EPOCH_KEY_SIZES,
    CryptoKeyError,
    DecryptError,
    HpkeKeyPair,
    HpkePublicKey,
    SealedArtifact,
    artifact_aad,
    content_key_aad,
    decrypt_artifact,
    decrypt_packet,
    encrypt_artifact,
    epoch_key_info,
    new_epoch_key,
    unwrap_epoch_key,
    wrap_epoch_key,
)
from p2pchat.chat.core.packet import (
    MAX_ARTIFACT_DATA,
    Artifact,
    Headers,
    Message,
    Packet,
    sha256,
    sign_message,
)
from p2pchat.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from p2pchat.identity import KeyPair

GROUP: Final = sha256(b"p2pchat test group")
OTHER_GROUP: Final = sha256(b"another group")
EPOCH: Final = 3
MEMBER_PAIR: Final = KeyPair.from_seed(bytes([7]) * 32)
MEMBER: Final = MEMBER_PAIR.peer_id
OTHER: Final = KeyPair.from_seed(bytes([8]) * 32).peer_id
AUTHOR_PAIR: Final = KeyPair.from_seed(bytes([9]) * 32)
AUTHOR: Final = AUTHOR_PAIR.peer_id
EPOCH_KEY: Final = bytes(range(32))

# One key pair per KEM for the whole module: ML-KEM key generation is the slow part.
KEYS: Final = {kem: HpkeKeyPair.generate(kem) for kem in KEMS}
OTHER_KEYS: Final = {kem: HpkeKeyPair.generate(kem) for kem in KEMS}


def wrap(kem: str, **overrides: Any) -> bytes:
    args: dict[str, Any] = {
        "kem": kem,
        "hpke_public": KEYS[kem].public_bytes(),
        "group_id": GROUP,
        "epoch": EPOCH,
        "peer": MEMBER,
    }
    args.update(overrides)
    return wrap_epoch_key(EPOCH_KEY, **args)


def unwrap(kem: str, enc: bytes, **overrides: Any) -> bytes:
    args: dict[str, Any] = {
        "keypair": KEYS[kem],
        "group_id": GROUP,
        "epoch": EPOCH,
        "peer": MEMBER,
    }
    args.update(overrides)
    return unwrap_epoch_key(enc, **args)


def seal(plaintext: bytes = b"hello, group", **overrides: Any) -> SealedArtifact:
    args: dict[str, Any] = {
        "epoch_key": EPOCH_KEY,
        "group_id": GROUP,
        "epoch": EPOCH,
        "author": AUTHOR,
    }
    args.update(overrides)
    return encrypt_artifact(plaintext, **args)


def open_sealed(sealed: SealedArtifact, **overrides: Any) -> bytes:
    args: dict[str, Any] = {
        "aes_key": sealed.aes_key,
        "iv": sealed.iv,
        "group_id": GROUP,
        "epoch": EPOCH,
        "author": AUTHOR,
        "epoch_key": EPOCH_KEY,
    }
    args.update(overrides)
    data = args.pop("data", sealed.data)
    return decrypt_artifact(data, **args)


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


# -- keys ----------------------------------------------------------------------------------------


def test_kem_names_and_sizes() -> None:
    assert DEFAULT_KEM == KEM_MLKEM768_X25519 == "MLKEM768_X25519"
    assert KEM_X25519 == "X25519"
    assert PUBLIC_KEY_SIZES == {KEM_MLKEM768_X25519: 1216, KEM_X25519: 32}
    assert WRAPPED_EPOCH_KEY_SIZES == {KEM_MLKEM768_X25519: 1168, KEM_X25519: 80}
    assert WRAPPED_CONTENT_KEY_SIZE == 60
    assert (CONTENT_KEY_SIZE, IV_SIZE, EPOCH_KEY_SIZE, PRIVATE_KEY_SIZE) == (32, 12, 32, 32)
    assert MAX_PLAINTEXT == MAX_ARTIFACT_DATA - 16


@pytest.mark.parametrize("kem", KEMS)
def test_generated_key_pair_shapes(kem: str) -> None:
    pair = HpkeKeyPair.generate(kem)
    assert pair.kem == kem
    assert len(pair.to_private_bytes()) == PRIVATE_KEY_SIZE
    assert len(pair.public_bytes()) == PUBLIC_KEY_SIZES[kem]
    assert pair.public_key == HpkePublicKey.from_bytes(kem, pair.public_bytes())
    assert pair != HpkeKeyPair.generate(kem)
    assert pair.to_private_bytes().hex() not in repr(pair)


def test_default_kem_is_the_hybrid() -> None:
    assert HpkeKeyPair.generate().kem == KEM_MLKEM768_X25519


@pytest.mark.parametrize("kem", KEMS)
def test_private_key_serialization_round_trip(kem: str) -> None:
    pair = KEYS[kem]
    restored = HpkeKeyPair.from_private_bytes(kem, pair.to_private_bytes())
    assert restored == pair
    assert restored.public_bytes() == pair.public_bytes()
    enc = wrap(kem)
    assert unwrap(kem, enc, keypair=restored) == EPOCH_KEY


def test_hybrid_private_key_expands_with_shake256() -> None:
    # draft-ietf-hpke-pq: SHAKE256(seed) -> ML-KEM-768 seed d || z (64) || X25519 scalar (32).
    seed = bytes(range(100, 132))
    pair = HpkeKeyPair.from_private_bytes(KEM_MLKEM768_X25519, seed)
    x_scalar = hashlib.shake_256(seed).digest(96)[64:]
    x_public = HpkeKeyPair.from_private_bytes(KEM_X25519, x_scalar).public_bytes()
    assert pair.public_bytes()[1184:] == x_public


# Published recipient keys: RFC 9180 A.1 (X25519) and draft-ietf-hpke-pq (MLKEM768-X25519, the
# entry with kdf_id 1); the hybrid public key (1216 bytes) is pinned by its SHA-256.
RFC9180_A1_SKRM: Final = "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8"
RFC9180_A1_PKRM: Final = "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d"
PQ_SKRM: Final = "3ec47fa82dd5689d27c6190e724c74ec8f608df3331ce331929e37b829676630"
PQ_PKRM_SHA256: Final = "ad8aaf3f00d8a39bfeec2947a7d5dde68be08bba19bd301a348a45dc5fcc8341"


def test_key_pairs_from_published_private_keys() -> None:
    x = HpkeKeyPair.from_private_bytes(KEM_X25519, bytes.fromhex(RFC9180_A1_SKRM))
    assert x.public_bytes().hex() == RFC9180_A1_PKRM
    pq = HpkeKeyPair.from_private_bytes(KEM_MLKEM768_X25519, bytes.fromhex(PQ_SKRM))
    assert hashlib.sha256(pq.public_bytes()).hexdigest() == PQ_PKRM_SHA256


SMALL_ORDER_X25519: Final = [
    "00" * 32,
    "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]


@pytest.mark.parametrize(
    ("kem", "size"),
    [
        (KEM_X25519, 0),
        (KEM_X25519, 31),
        (KEM_X25519, 33),
        (KEM_X25519, 1216),
        (KEM_MLKEM768_X25519, 32),
        (KEM_MLKEM768_X25519, 1184),
        (KEM_MLKEM768_X25519, 1215),
        (KEM_MLKEM768_X25519, 1217),
    ],
)
def test_public_key_of_wrong_size_is_refused(kem: str, size: int) -> None:
    data = (KEYS[kem].public_bytes() * 2)[:size]
    with pytest.raises(CryptoKeyError, match="bytes") as info:
        HpkePublicKey.from_bytes(kem, data)
    assert info.value.hint == "malformed"


@pytest.mark.parametrize("kem", ["", "x25519", "MLKEM768", "MLKEM1024_P384", "P256"])
def test_unknown_kem_is_refused(kem: str) -> None:
    with pytest.raises(CryptoKeyError, match="unknown KEM"):
        HpkePublicKey.from_bytes(kem, bytes(32))
    with pytest.raises(CryptoKeyError, match="unknown KEM"):
        HpkeKeyPair.generate(kem)
    with pytest.raises(CryptoKeyError, match="unknown KEM"):
        HpkeKeyPair.from_private_bytes(kem, bytes(32))
    with pytest.raises(CryptoKeyError, match="unknown KEM"):
        wrap_epoch_key(
            EPOCH_KEY, kem=kem, hpke_public=bytes(32), group_id=GROUP, epoch=0, peer=MEMBER
        )


@pytest.mark.parametrize("point", SMALL_ORDER_X25519)
def test_small_order_x25519_keys_are_refused(point: str) -> None:
    with pytest.raises(CryptoKeyError, match="small order"):
        HpkePublicKey.from_bytes(KEM_X25519, bytes.fromhex(point))
    hybrid = KEYS[KEM_MLKEM768_X25519].public_bytes()[:1184] + bytes.fromhex(point)
    with pytest.raises(CryptoKeyError, match="small order"):
        HpkePublicKey.from_bytes(KEM_MLKEM768_X25519, hybrid)


def test_mlkem_key_failing_the_modulus_check_is_refused() -> None:
    # FIPS 203 7.2: every 12-bit coefficient must be below q = 3329; 0xfff is not.
    data = b"\xff" * 1184 + KEYS[KEM_X25519].public_bytes()
    with pytest.raises(CryptoKeyError, match="ML-KEM"):
        HpkePublicKey.from_bytes(KEM_MLKEM768_X25519, data)


@pytest.mark.parametrize("size", [0, 31, 33, 64, 96])
def test_private_key_of_wrong_size_is_refused(size: int) -> None:
    for kem in KEMS:
        with pytest.raises(CryptoKeyError, match="32 bytes"):
            HpkeKeyPair.from_private_bytes(kem, bytes(size))


def test_error_classes() -> None:
    assert issubclass(CryptoKeyError, DecodeError)
    assert issubclass(DecryptError, RemoteProtocolError)
    assert not issubclass(DecryptError, DecodeError)


@settings(max_examples=300, deadline=None)
@given(kem=st.sampled_from([*KEMS, "bogus"]), data=st.binary(max_size=1300))
def test_public_key_parser_raises_only_crypto_key_error(kem: str, data: bytes) -> None:
    try:
        key = HpkePublicKey.from_bytes(kem, data)
    except CryptoKeyError:
        return
    assert key.to_bytes() == data
    assert len(data) == PUBLIC_KEY_SIZES[kem]


@settings(max_examples=200, deadline=None)
@given(kem=st.sampled_from([*KEMS, "bogus"]), data=st.binary(max_size=40))
def test_private_key_loader_raises_only_crypto_key_error(kem: str, data: bytes) -> None:
    try:
        pair = HpkeKeyPair.from_private_bytes(kem, data)
    except CryptoKeyError:
        return
    assert pair.to_private_bytes() == data


# -- epoch keys ----------------------------------------------------------------------------------


def test_new_epoch_key() -> None:
    first, second = new_epoch_key(), new_epoch_key()
    assert len(first) == len(second) == EPOCH_KEY_SIZE
    assert first != second


def test_epoch_key_info_layout() -> None:
    info = epoch_key_info(GROUP, EPOCH, MEMBER)
    assert info == b"p2pchat/epoch-key/v1" + GROUP + bytes(7) + b"\x03" + MEMBER.to_bytes()


@pytest.mark.parametrize("kem", KEMS)
def test_wrap_unwrap_round_trip(kem: str) -> None:
    enc = wrap(kem)
    assert len(enc) == WRAPPED_EPOCH_KEY_SIZES[kem]
    assert unwrap(kem, enc) == EPOCH_KEY


@pytest.mark.parametrize("kem", KEMS)
def test_wrapping_is_randomized(kem: str) -> None:
    first, second = wrap(kem), wrap(kem)
    assert first != second
    assert unwrap(kem, first) == unwrap(kem, second) == EPOCH_KEY


@pytest.mark.parametrize("kem", KEMS)
@pytest.mark.parametrize(
    "override",
    [
        pytest.param({"group_id": OTHER_GROUP}, id="group"),
        pytest.param({"epoch": EPOCH + 1}, id="epoch"),
        pytest.param({"peer": OTHER}, id="peer"),
    ],
)
def test_unwrap_with_another_binding_fails(kem: str, override: dict[str, Any]) -> None:
    enc = wrap(kem)
    with pytest.raises(DecryptError) as info:
        unwrap(kem, enc, **override)
    assert info.value.hint == "cannot decrypt"


@pytest.mark.parametrize("kem", KEMS)
def test_unwrap_with_another_members_key_fails(kem: str) -> None:
    enc = wrap(kem)
    with pytest.raises(DecryptError):
        unwrap(kem, enc, keypair=OTHER_KEYS[kem])


def test_unwrap_with_the_other_kem_fails() -> None:
    enc = wrap(KEM_X25519)
    with pytest.raises(DecryptError, match="1168 bytes"):
        unwrap(KEM_MLKEM768_X25519, enc)
    enc = wrap(KEM_MLKEM768_X25519)
    with pytest.raises(DecryptError, match="80 bytes"):
        unwrap(KEM_X25519, enc)


@pytest.mark.parametrize("kem", KEMS)
def test_tampered_wrapped_key_fails(kem: str) -> None:
    enc = wrap(kem)
    size = len(enc)
    # The KEM ciphertext (start, end), the AEAD ciphertext, the tag.
    for index in (0, size - 49, size - 48, size - 17, size - 1):
        with pytest.raises(DecryptError):
            unwrap(kem, flip(enc, index))
    for bad in (enc[:-1], enc + b"\x00", b""):
        with pytest.raises(DecryptError):
            unwrap(kem, bad)


@pytest.mark.parametrize("kem", KEMS)
def test_wrap_refuses_bad_local_arguments(kem: str) -> None:
    public = KEYS[kem].public_bytes()
    with pytest.raises(LocalProtocolError, match="epoch key"):
        wrap_epoch_key(bytes(31), kem=kem, hpke_public=public, group_id=GROUP, epoch=0, peer=MEMBER)
    with pytest.raises(LocalProtocolError, match="group_id"):
        wrap(kem, group_id=GROUP[:31])
    with pytest.raises(LocalProtocolError, match="epoch"):
        wrap(kem, epoch=2**64)
    with pytest.raises(LocalProtocolError, match="epoch"):
        unwrap(kem, wrap(kem), epoch=-1)


@settings(max_examples=300, deadline=None)
@given(kem=st.sampled_from(KEMS), data=st.data())
def test_unwrap_raises_only_decrypt_error(kem: str, data: st.DataObject) -> None:
    size = WRAPPED_EPOCH_KEY_SIZES[kem]
    enc = data.draw(
        st.one_of(st.binary(max_size=size + 2), st.binary(min_size=size, max_size=size))
    )
    with pytest.raises(DecryptError):
        unwrap(kem, enc)


# -- known answers: the recipient side of published HPKE vectors ---------------------------------


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, b"HPKE-v1" + suite_id + label + ikm, hashlib.sha256).digest()


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    # HKDF-Expand with a single block (length <= 32).
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    return hmac.new(prk, labeled + b"\x01", hashlib.sha256).digest()[:length]


def key_schedule(
    kem_id: int, aead_id: int, key_size: int, shared_secret: bytes, info: bytes
) -> tuple[bytes, bytes, bytes]:
    """RFC 9180 §5.1 base mode with HKDF-SHA256: (key_schedule_context, key, base_nonce)."""
    suite_id = b"HPKE" + kem_id.to_bytes(2, "big") + b"\x00\x01" + aead_id.to_bytes(2, "big")
    context = (
        b"\x00"
        + _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
        + _labeled_extract(suite_id, b"", b"info_hash", info)
    )
    secret = _labeled_extract(suite_id, shared_secret, b"secret", b"")
    key = _labeled_expand(suite_id, secret, b"key", context, key_size)
    nonce = _labeled_expand(suite_id, secret, b"base_nonce", context, 12)
    return context, key, nonce


# RFC 9180 A.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode.
A1_INFO: Final = "4f6465206f6e2061204772656369616e2055726e"
A1_ENC: Final = "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431"
A1_SHARED_SECRET: Final = "fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc"
A1_CONTEXT: Final = (
    "00725611c9d98c07c03f60095cd32d400d8347d45ed67097bbad50fc56da742d07"
    "cb6cffde367bb0565ba28bb02c90744a20f5ef37f30523526106f637abb05449"
)
A1_KEY: Final = "4531685d41d65f03dc48f6b8302c05b0"
A1_BASE_NONCE: Final = "56d890e5accaaf011cff4b7d"

# draft-ietf-hpke-pq test-vectors.json: MLKEM768-X25519 (0x647a), HKDF-SHA256, ChaCha20Poly1305.
PQ_INFO: Final = "34663634363532303666366532303631323034373732363536333639363136653230353537323665"
PQ_SHARED_SECRET: Final = "58200ed1f137bd95a921bb47f6aaecf2395b26f7fd24efd3a5ffae4849e8dea3"
PQ_KEY: Final = "131c2ebb469b909a40915914afd7ff5e638888ac7195dcaaaef8f9a84f0e4030"
PQ_BASE_NONCE: Final = "2b7a68f19e6cdbd43dda3c6d"
PQ_ENC: Final = (
    "26759c7b22923ea5cc9c78e3e14c8fc62dcb0a66ce44460966978a7fe9685e0c6d22999d99a3f112c307a6d5"
    "b2e63591f41e8a3516ba62908376d664557206e696ae870305ff6ba08125266bc0765672beca90fd5c6dae0d"
    "3ddad1506065a9d4f297e0c3e70bb441961df26d7a19d79d1ef7e2ac5e53b32a3c7b4e07f2af2ae65830a3e8"
    "d1cb2ac1932fc19ec5434303b62c9d010645cf95a475913da5d77a282b88402e4a77ab17b09559dce8a96c67"
    "a27bea8f653ceaca3d278b6ed150fe936dda28b1726665c946cab30363ef89eb878ffcc74caa277a5dab1994"
    "193a67967125ebd50986dc16997b8f7484d7d0e27c79ff4b68201c1b4102f5a73322fd3da96bf655d90c9b1e"
    "6305e01ab1b3449ea3f458b0e98e1f2d1632825c3b30018bb5eefbcc80f767d0b9e7f9f731e1958083879ebc"
    "c1b5bb061e89302c444a85eeed169b10d2520fd47b6a111914f3bda2f31d04f250522ba951012a629fa2cd21"
    "92583cc9abd75d02b7a11fd18056c414b8f0e0936535bf9b637c7e614a1ae9b9e907fe9d14243f13625ec92a"
    "97599eaa491b9da918b586e27d34c7279205dd76cf0ecdbf60b5aea4cfb9dca41069f3e2fc8f371a7cf3b089"
    "ea469d8417bda3149159992399ccd5baf776a0f8966d4742cbedaeac131dde853cb1fbb7b869a4c01cea8a48"
    "7a2e52e757bf4dfcec23995e5f088804d2cf99c82f087454144cc586845d7cf81249e7ad919ea1b06001ad13"
    "501da118ee19859595015b4b1872912dd2d4f5dd854f144ae07038bd8bb2b498f8edcb1c70c2102af768d508"
    "a1b4237238c0c6e34a9c819b0ebf28f49505d374095b2b58c7a810cf1e806cb3c79af3bc84c8b657787804e3"
    "74df2b49be6ac510d43024e65fd031540a7cd45c9348ad9f5511b969be6f9c4d849c1428f611225b0d9a3ae3"
    "41669ba645baa877cdc34c39f5975f4991a77f86eca2c25ebee63a06928c1bbc9513f35547645e835544c1e4"
    "a8f33d7f29c1cfbde6425fa05aeff69f373aa8a281c92817cbe5be9305795354efc71a89462e87ce83919d67"
    "9dcbfded88f7fff9177f4b49e8a959d9aa78b63feb99fa56735df0f4fc253653a9177f767b307bb2a9e7e4d9"
    "042f22cc6c4f177db80efaebfef8a3baa6f1423335c830308c2496118263f0bd361d93f8b4e75a7cba94c2af"
    "72dd13ee8926524cfe9df14f79165a3498b9fd631cbb874d25b11315f9acb442512561cf7dc6098a08874fcc"
    "704cdd5e84e57811a49e78fbd56e5a8e767617321c295095595ea2b0f4aaca30dd38749ab83532be1bdcf4c3"
    "2a119e035558bb427dbdb806b4e15cea8df3c098728c2b5e40209c5138531db1b660777544e6a014477a7d1b"
    "93eb0f245fe9e7053997c10504ef692f21639c86d8926ddce6886d0c39eb7c59357ee54f81871019593713f4"
    "a6df37bf7003358694cff59af9872ca02bf762e20499227dba2f552203459dcc69780ef08d9bab4140d96e1c"
    "478f06b63b60c9bfb10d90e31d47570ea949ab8e9b99db6ec2f8a2a77dcb25cc36b733dfc09b8299a9d7b19e"
    "68c09ad82703f9b47d34d1a3cbafe42c73f57d0e"
)

# Our wrapped epoch key for MEMBER in GROUP, epoch 3, of EPOCH_KEY, built from the A.1 ``enc``.
X25519_WRAPPED_VECTOR: Final = (
    "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431"
    "1be3faef933adb674482706a3f78f5767205000f8091bcb964e585bd637c7f21"
    "f65746ba888895ede1d1e4084e2e11db"
)
# The AEAD part (ciphertext || tag) of the same for the MLKEM768_X25519 vector ``enc``.
HYBRID_WRAPPED_TAIL: Final = (
    "c70065b4885b2393872d4e682fec4d296d1b734ace1ab1c560f97d130e690a6f"
    "fc1e2a7b4455ce1af70cd2cc1d11596a"
)


def test_independent_key_schedule_matches_the_published_vectors() -> None:
    context, key, nonce = key_schedule(
        0x0020, 0x0001, 16, bytes.fromhex(A1_SHARED_SECRET), bytes.fromhex(A1_INFO)
    )
    assert (context.hex(), key.hex(), nonce.hex()) == (A1_CONTEXT, A1_KEY, A1_BASE_NONCE)
    _, key, nonce = key_schedule(
        0x647A, 0x0003, 32, bytes.fromhex(PQ_SHARED_SECRET), bytes.fromhex(PQ_INFO)
    )
    assert (key.hex(), nonce.hex()) == (PQ_KEY, PQ_BASE_NONCE)


@pytest.mark.parametrize(
    ("kem", "kem_id", "private", "enc", "shared_secret", "expected"),
    [
        (KEM_X25519, 0x0020, RFC9180_A1_SKRM, A1_ENC, A1_SHARED_SECRET, X25519_WRAPPED_VECTOR),
        (
            KEM_MLKEM768_X25519,
            0x647A,
            PQ_SKRM,
            PQ_ENC,
            PQ_SHARED_SECRET,
            PQ_ENC + HYBRID_WRAPPED_TAIL,
        ),
    ],
    ids=["X25519", "MLKEM768_X25519"],
)
def test_unwrap_known_answer(
    kem: str, kem_id: int, private: str, enc: str, shared_secret: str, expected: str
) -> None:
    # Seal EPOCH_KEY as the sender with that ephemeral key would, for our suite and info ...
    info = epoch_key_info(GROUP, EPOCH, MEMBER)
    _, key, nonce = key_schedule(kem_id, 0x0002, 32, bytes.fromhex(shared_secret), info)
    wrapped = bytes.fromhex(enc) + AESGCM(key).encrypt(nonce, EPOCH_KEY, b"")
    assert wrapped.hex() == expected
    assert len(wrapped) == WRAPPED_EPOCH_KEY_SIZES[kem]
    # ... and the recipient's published private key opens it.
    pair = HpkeKeyPair.from_private_bytes(kem, bytes.fromhex(private))
    assert unwrap(kem, wrapped, keypair=pair) == EPOCH_KEY
    with pytest.raises(DecryptError):
        unwrap(kem, wrapped, keypair=pair, epoch=EPOCH + 1)


# -- artifacts -----------------------------------------------------------------------------------

CONTENT_KEY: Final = bytes([0x11]) * 32
IV: Final = bytes([0x22]) * 12
KEY_NONCE: Final = bytes([0x33]) * 12

# (plaintext, artifact.data, aes_key) with EPOCH_KEY, GROUP, epoch 3, AUTHOR, CONTENT_KEY, IV and
# KEY_NONCE.
ARTIFACT_VECTORS: Final = [
    (
        b"hello, group",
        "7f926b25afe3bf389750ab4c91cfc5ef8c6d9c622433b2d09b9aa972",
        "333333333333333333333333540191fb70b108f4345015f8a6716aa30030c70973e1b9d5673132c99508aa2d"
        "229d098f209d09d7919f1271b94bbdb8",
    ),
]


def test_artifact_aad_layouts() -> None:
    assert artifact_aad(GROUP, EPOCH, AUTHOR) == (
        b"p2pchat/artifact/v1" + GROUP + bytes(7) + b"\x03" + AUTHOR.to_bytes()
    )
    assert content_key_aad(GROUP, EPOCH) == b"p2pchat/content-key/v1" + GROUP + bytes(7) + b"\x03"


@pytest.mark.parametrize(("plaintext", "data", "aes_key"), ARTIFACT_VECTORS)
def test_artifact_vectors(plaintext: bytes, data: str, aes_key: str) -> None:
    sealed = seal(plaintext, content_key=CONTENT_KEY, iv=IV, key_nonce=KEY_NONCE)
    assert sealed == (bytes.fromhex(data), bytes.fromhex(aes_key), IV)
    # The layouts of §7, from the primitives.
    aad = b"p2pchat/artifact/v1" + GROUP + bytes(7) + b"\x03" + AUTHOR.to_bytes()
    assert sealed.data == AESGCM(CONTENT_KEY).encrypt(IV, plaintext, aad)
    aad = b"p2pchat/content-key/v1" + GROUP + bytes(7) + b"\x03"
    assert sealed.aes_key == KEY_NONCE + AESGCM(EPOCH_KEY).encrypt(KEY_NONCE, CONTENT_KEY, aad)
    assert open_sealed(sealed) == plaintext


@pytest.mark.parametrize("size", [0, 1, 1000, 64 * 1024, MAX_PLAINTEXT])
def test_artifact_round_trip(size: int) -> None:
    plaintext = bytes(range(256)) * (size // 256) + bytes(size % 256)
    sealed = seal(plaintext)
    assert len(sealed.data) == size + 16 <= MAX_ARTIFACT_DATA
    assert len(sealed.aes_key) == WRAPPED_CONTENT_KEY_SIZE
    assert len(sealed.iv) == IV_SIZE
    assert open_sealed(sealed) == plaintext


def test_artifact_keys_are_random() -> None:
    first, second = seal(), seal()
    assert first.data != second.data
    assert first.aes_key[:12] != second.aes_key[:12]
    assert first.iv != second.iv
    assert open_sealed(first) == open_sealed(second) == b"hello, group"


def test_oversized_artifact_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="exceeds"):
        seal(bytes(MAX_PLAINTEXT + 1))


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({"epoch_key": bytes(32)}, id="epoch-key"),
        pytest.param({"group_id": OTHER_GROUP}, id="group"),
        pytest.param({"epoch": EPOCH + 1}, id="epoch"),
        pytest.param({"author": OTHER}, id="author"),
    ],
)
def test_artifact_with_another_key_or_binding_fails(override: dict[str, Any]) -> None:
    with pytest.raises(DecryptError) as info:
        open_sealed(seal(), **override)
    assert info.value.hint == "cannot decrypt"


def test_tampered_artifact_fails() -> None:
    sealed = seal(bytes(100))
    for index in (0, 50, 99, 100, 115):
        with pytest.raises(DecryptError):
            open_sealed(sealed, data=flip(sealed.data, index))
    # aes_key: nonce, wrapped content key, tag.
    for index in (0, 11, 12, 43, 44, 59):
        with pytest.raises(DecryptError):
            open_sealed(sealed, aes_key=flip(sealed.aes_key, index))
    for index in (0, 11):
        with pytest.raises(DecryptError):
            open_sealed(sealed, iv=flip(sealed.iv, index))
    with pytest.raises(DecryptError):
        open_sealed(sealed, data=sealed.data[:-1])
    with pytest.raises(DecryptError):
        open_sealed(sealed, data=b"")


def test_swapped_aes_key_fails() -> None:
    first, second = seal(), seal()
    with pytest.raises(DecryptError):
        open_sealed(first, aes_key=second.aes_key)
    with pytest.raises(DecryptError):
        open_sealed(first, iv=second.iv)


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({"aes_key": b""}, id="aes_key-empty"),
        pytest.param({"aes_key": bytes(59)}, id="aes_key-short"),
        pytest.param({"aes_key": bytes(61)}, id="aes_key-long"),
        pytest.param({"iv": b""}, id="iv-empty"),
        pytest.param({"iv": bytes(16)}, id="iv-long"),
    ],
)
def test_wrong_sized_aes_key_or_iv_fails(override: dict[str, Any]) -> None:
    with pytest.raises(DecryptError, match="bytes"):
        open_sealed(seal(), **override)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"epoch_key": bytes(16)}, "epoch key"),
        ({"content_key": bytes(16)}, "content key"),
        ({"iv": bytes(8)}, "iv"),
        ({"key_nonce": bytes(13)}, "key nonce"),
        ({"group_id": b""}, "group_id"),
        ({"epoch": 2**64}, "epoch"),
    ],
)
def test_encrypt_refuses_bad_local_arguments(override: dict[str, Any], match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        seal(**override)


def test_decrypt_refuses_a_wrong_sized_epoch_key_locally() -> None:
    with pytest.raises(LocalProtocolError, match="epoch key"):
        open_sealed(seal(), epoch_key=bytes(31))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64), aes_key=st.binary(max_size=64), iv=st.binary(max_size=16))
def test_decrypt_artifact_raises_only_decrypt_error(data: bytes, aes_key: bytes, iv: bytes) -> None:
    sealed = SealedArtifact(data, aes_key, iv)
    with pytest.raises(DecryptError):
        open_sealed(sealed)


@settings(max_examples=100, deadline=None)
@given(plaintext=st.binary(max_size=2048), epoch=st.integers(0, 2**64 - 1))
def test_artifact_round_trip_property(plaintext: bytes, epoch: int) -> None:
    sealed = seal(plaintext, epoch=epoch)
    assert open_sealed(sealed, epoch=epoch) == plaintext


# -- packets -------------------------------------------------------------------------------------


def make_packet(message_type: str, sealed: SealedArtifact, author: KeyPair = AUTHOR_PAIR) -> Packet:
    artifact = Artifact(
        "text/plain", sealed.data, sha256(sealed.data), sha256(sealed.aes_key + sealed.iv)
    )
    message = Message(
        group_id=GROUP,
        epoch=EPOCH,
        message_type=message_type,
        time_stamp=1_700_000_000_000,
        author=author.peer_id,
        ref_hash=None,
        parents=(),
        headers=Headers(),
        artifact=artifact,
    )
    return sign_message(author, message, sealed.aes_key, sealed.iv)


def test_decrypt_packet_round_trip() -> None:
    sealed = seal(b"a text message")
    packet = make_packet("text", sealed)
    assert decrypt_packet(packet, epoch_key=EPOCH_KEY) == b"a text message"
    with pytest.raises(DecryptError):
        decrypt_packet(packet, epoch_key=new_epoch_key())


def test_decrypt_packet_binds_the_author() -> None:
    # Another member re-signs someone else's artifact as its own: it no longer decrypts.
    sealed = seal(b"a text message")
    packet = make_packet("text", sealed, author=MEMBER_PAIR)
    with pytest.raises(DecryptError):
        decrypt_packet(packet, epoch_key=EPOCH_KEY)


def test_decrypt_packet_refuses_roster_messages() -> None:
    packet = make_packet("roster", SealedArtifact(b"\xa0", b"", b""))
    with pytest.raises(LocalProtocolError, match="roster"):
        decrypt_packet(packet, epoch_key=EPOCH_KEY)
