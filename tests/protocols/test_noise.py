"""Tests for the Noise framework core and the libp2p Noise secure channel."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.errors import DecodeError, LocalProtocolError, ProtocolError, RemoteProtocolError
from p2pchat.identity import KeyPair, KeyType, PeerID, PublicKey
from p2pchat.protocols.noise import (
    FRAME_HEADER_LEN,
    MAX_MESSAGE_LEN,
    MAX_NONCE,
    MAX_PLAINTEXT_LEN,
    NEED_DATA,
    STATIC_KEY_SIGNATURE_PREFIX,
    TAGLEN,
    CipherState,
    Data,
    DecryptionError,
    HandshakeComplete,
    HandshakeState,
    InvalidSignatureError,
    NoiseConnection,
    NoiseExtensions,
    NoiseHandshakePayload,
    NoiseState,
    NonceExhaustedError,
    PeerMismatchError,
    Role,
    SymmetricState,
)

# ---------------------------------------------------------------------------------------
# Official Noise vectors
# ---------------------------------------------------------------------------------------

# The repository root is tests/..; the shared vectors live beside it in ../shared.
VECTOR_DIR = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "noise"
VECTOR_FILES = ("snow-xx.json", "cacophony-xx.json")
SUPPORTED_PROTOCOLS = ("Noise_XX_25519_ChaChaPoly_SHA256", "Noise_XX_25519_AESGCM_SHA256")


@attrs.frozen
class NoiseVector:
    """One XX vector: keys, prologue, and (payload, ciphertext) pairs in order."""

    source: str
    protocol_name: str
    init_prologue: str
    init_static: str
    init_ephemeral: str
    resp_static: str
    resp_ephemeral: str
    handshake_hash: str | None
    messages: tuple[tuple[str, str], ...]

    @classmethod
    def from_json(cls, source: str, entry: dict[str, Any]) -> NoiseVector:
        assert entry["init_prologue"] == entry["resp_prologue"]
        return cls(
            source=source,
            protocol_name=entry["protocol_name"],
            init_prologue=entry["init_prologue"],
            init_static=entry["init_static"],
            init_ephemeral=entry["init_ephemeral"],
            resp_static=entry["resp_static"],
            resp_ephemeral=entry["resp_ephemeral"],
            handshake_hash=entry.get("handshake_hash"),
            messages=tuple((m["payload"], m["ciphertext"]) for m in entry["messages"]),
        )


# Transcribed from the shared files so that they run even without ../shared:
# mcginty/snow tests/vectors/snow.txt and cacophony.txt, Noise_XX_25519_ChaChaPoly_SHA256.
INLINE_VECTORS = (
    NoiseVector(
        source="snow",
        protocol_name="Noise_XX_25519_ChaChaPoly_SHA256",
        init_prologue=(
            "5468657265206973206e6f20726967687420616e642077726f6e672e20546865"
            "72652773206f6e6c792066756e20616e6420626f72696e672e"
        ),
        init_static="7dec208517a3b81a2861d7a71266d5d6dc944c5a8816634a86fe63198a0148ee",
        init_ephemeral="a32daf21e93c0131495ce1d903181fde81cc46937daaeb990bae7c992709421e",
        resp_static="4d0aed5098e3b4ef20357e9f686ce66204c792b358da2e475017d6c485304881",
        resp_ephemeral="4eece0f195d026db035ff987597c429d3ad3bcc2944df37d649528951b2a27c5",
        handshake_hash=None,
        messages=(
            (
                "d03c489139e645d0711a3c9e810d776b46a84912463fafa87b884eebf242dc34",
                (
                    "f9fa868ba97ab8a2686deccfaad5a484ee10a5bb85e3d1dce015a84797f92818"
                    "d03c489139e645d0711a3c9e810d776b46a84912463fafa87b884eebf242dc34"
                ),
            ),
            (
                "d8190a92f7dc0c93dbea9118ba8055751fb7c6590c416ffbd419964132b99a85",
                (
                    "8c4e6fdb7d09d501a86f7eca5c234522751706ed409182c05cdf5f827d4dae47"
                    "b81c6c5f43b025692c24391eefee725c17d8cb0fbe3e4abb8aedf42c4fd2592d"
                    "4ea48ac08989d6ae8b4adae08b2c34087c808c7aa55a63c02b0fab9e93061233"
                    "6bd43eaea04d3c670a0a146691aa9cc9d357872320dc735dbc48580cffb553db"
                ),
            ),
            (
                "77891b19dcb92ef7c055b672c4a5aa7fdf1c84146b8b303459022729473ce254",
                (
                    "933ca6b5ed60df3df66121f0ab49a09e49efa45c613a86a3cecbf4c535cef2f8"
                    "3f72b42837b18e3572f2fdc2b74c331e2368a545cef54bdca081678ab0e9dd53"
                    "48122459e0c034c851984d88ce610963d43cde6cfe73a67fbd5a63e8bfca96d0"
                ),
            ),
            (
                "d7efdf988072881941db045a42882433817555128fbf5663e56081712ec7d212",
                (
                    "54ef0ff0629e1aaa7685a2806ab111cba76b52331f2642276736f415868eacb6"
                    "9ab2577f3bda0cbf72f879685f6ed25f"
                ),
            ),
            (
                "dd7bf01a588bafb52c6cfba952e5d8fe35cc2b3f92b4730ae2474615157345ce",
                (
                    "356be70f110306d5c699bb834bb9d58d909e325924dfbec972e406e6f294dc63"
                    "e1daebefe8a62a334facc8048ab4ad66"
                ),
            ),
        ),
    ),
    NoiseVector(
        source="cacophony",
        protocol_name="Noise_XX_25519_ChaChaPoly_SHA256",
        init_prologue="4a6f686e2047616c74",
        init_static="e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
        init_ephemeral="893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
        resp_static="4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
        resp_ephemeral="bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
        handshake_hash="c8e5f64e846193be2a834104c2a009868d6c9f3bd3c186299888b488b2f1f58e",
        messages=(
            (
                "4c756477696720766f6e204d69736573",
                (
                    "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944"
                    "4c756477696720766f6e204d69736573"
                ),
            ),
            (
                "4d757272617920526f746862617264",
                (
                    "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843"
                    "81cbad1f276e038c48378ffce2b65285e08d6b68aaa3629a5a8639392490e5b9"
                    "bd5269c2f1e4f488ed8831161f19b7815528f8982ffe09be9b5c412f8a0db50f"
                    "8814c7194e83f23dbd8d162c9326ad"
                ),
            ),
            (
                "462e20412e20486179656b",
                (
                    "c7195ffacac1307ff99046f219750fc47693e23c3cb08b89c2af808b444850a8"
                    "0ae475b9df0f169ae80a89be0865b57f58c9fea0d4ec82a286427402f113e4b6"
                    "ae769a1d95941d49b25030"
                ),
            ),
            (
                "4361726c204d656e676572",
                "96763ed773f8e47bb3712f0e29b3060ffc956ffc146cee53d5e1df",
            ),
            (
                "4a65616e2d426170746973746520536179",
                ("3e40f15f6f3a46ae446b253bf8b1d9ffb6ed9b174d272328ff91a7e2e5c79c07f5"),
            ),
            (
                "457567656e2042f6686d20766f6e2042617765726b",
                ("eb3f3515110702e047a6c9da4478b6ead94873c11c0f2d710ddb3f09fce024b3a58502ae3f"),
            ),
        ),
    ),
)


def _file_vectors() -> Iterator[Any]:
    if not VECTOR_DIR.is_dir():
        yield pytest.param(
            None,
            marks=pytest.mark.skip(reason=f"shared Noise vectors not found at {VECTOR_DIR}"),
            id="shared-vectors-missing",
        )
        return
    for name in VECTOR_FILES:
        entries = json.loads((VECTOR_DIR / name).read_text())["vectors"]
        for index, entry in enumerate(entries):
            if entry["protocol_name"] in SUPPORTED_PROTOCOLS:
                vector = NoiseVector.from_json(name, entry)
                yield pytest.param(vector, id=f"{name}-{index}-{entry['protocol_name']}")


def _cipher_of(protocol_name: str) -> Any:
    return protocol_name.split("_")[3]


def run_vector(vector: NoiseVector) -> None:
    """Replay a vector: messages 1-3 through HandshakeState, the rest after Split.

    Messages alternate initiator, responder, initiator, ... for the whole list.
    """
    cipher = _cipher_of(vector.protocol_name)
    prologue = bytes.fromhex(vector.init_prologue)
    initiator = HandshakeState(
        initiator=True,
        static_key=bytes.fromhex(vector.init_static),
        ephemeral_key=bytes.fromhex(vector.init_ephemeral),
        prologue=prologue,
        cipher=cipher,
    )
    responder = HandshakeState(
        initiator=False,
        static_key=bytes.fromhex(vector.resp_static),
        ephemeral_key=bytes.fromhex(vector.resp_ephemeral),
        prologue=prologue,
        cipher=cipher,
    )
    transport: dict[bool, tuple[CipherState, CipherState]] = {}
    for index, (payload_hex, ciphertext_hex) in enumerate(vector.messages):
        payload = bytes.fromhex(payload_hex)
        expected = bytes.fromhex(ciphertext_hex)
        from_initiator = index % 2 == 0
        if index < 3:
            sender, receiver = (initiator, responder) if from_initiator else (responder, initiator)
            assert sender.write_message(payload) == expected, f"handshake message {index + 1}"
            assert receiver.read_message(expected) == payload
            if index == 2:
                assert initiator.is_complete
                assert responder.is_complete
                assert initiator.handshake_hash == responder.handshake_hash
                if vector.handshake_hash is not None:
                    assert initiator.handshake_hash.hex() == vector.handshake_hash
                i_send, i_recv = initiator.split()
                r_recv, r_send = responder.split()
                transport = {True: (i_send, r_recv), False: (r_send, i_recv)}
        else:
            send_cs, recv_cs = transport[from_initiator]
            assert send_cs.encrypt_with_ad(b"", payload) == expected, f"transport {index + 1}"
            assert recv_cs.decrypt_with_ad(b"", expected) == payload
    assert len(vector.messages) > 3


@pytest.mark.parametrize("vector", list(_file_vectors()))
def test_shared_vector_files(vector: NoiseVector) -> None:
    run_vector(vector)


@pytest.mark.parametrize("vector", INLINE_VECTORS, ids=lambda v: f"{v.source}-inline")
def test_inline_vectors(vector: NoiseVector) -> None:
    run_vector(vector)


def test_inline_vectors_match_shared_files() -> None:
    if not VECTOR_DIR.is_dir():
        pytest.skip(f"shared Noise vectors not found at {VECTOR_DIR}")
    from_files = {
        (p.values[0].source.split("-")[0], p.values[0].protocol_name): p.values[0]
        for p in _file_vectors()
    }
    for inline in INLINE_VECTORS:
        assert (
            attrs.evolve(inline, source=inline.source + "-xx.json")
            == from_files[(inline.source, inline.protocol_name)]
        )


# ---------------------------------------------------------------------------------------
# Framework state objects
# ---------------------------------------------------------------------------------------


def test_symmetric_state_initial_hash_is_padded_protocol_name() -> None:
    state = SymmetricState(b"Noise_XX_25519_ChaChaPoly_SHA256")
    assert state.h == b"Noise_XX_25519_ChaChaPoly_SHA256"
    short = SymmetricState(b"Noise_XX_25519_AESGCM_SHA256", "AESGCM")
    assert short.h == b"Noise_XX_25519_AESGCM_SHA256" + bytes(4)
    assert short.ck == short.h
    assert not short.cipher_state.has_key()


def test_cipher_state_without_key_is_identity() -> None:
    cs = CipherState()
    assert cs.encrypt_with_ad(b"ad", b"plain") == b"plain"
    assert cs.decrypt_with_ad(b"ad", b"plain") == b"plain"
    assert cs.n == 0


def test_cipher_state_failed_decrypt_keeps_nonce() -> None:
    sender, receiver = CipherState(bytes(32)), CipherState(bytes(32))
    ciphertext = sender.encrypt_with_ad(b"", b"hello")
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    with pytest.raises(DecryptionError):
        receiver.decrypt_with_ad(b"", tampered)
    assert receiver.n == 0
    assert receiver.decrypt_with_ad(b"", ciphertext) == b"hello"
    assert receiver.n == 1


@pytest.mark.parametrize("cipher", ["ChaChaPoly", "AESGCM"])
def test_cipher_state_nonce_exhaustion(cipher: Any) -> None:
    sender, receiver = CipherState(bytes(32), cipher), CipherState(bytes(32), cipher)
    sender.set_nonce(MAX_NONCE - 1)
    receiver.set_nonce(MAX_NONCE - 1)
    last = sender.encrypt_with_ad(b"", b"last")
    assert receiver.decrypt_with_ad(b"", last) == b"last"
    assert sender.n == receiver.n == MAX_NONCE
    with pytest.raises(NonceExhaustedError):
        sender.encrypt_with_ad(b"", b"one too many")
    with pytest.raises(NonceExhaustedError):
        receiver.decrypt_with_ad(b"", last)
    with pytest.raises(ValueError, match="64-bit"):
        sender.set_nonce(MAX_NONCE + 1)


def test_handshake_state_refuses_out_of_turn() -> None:
    initiator = HandshakeState(initiator=True, static_key=X25519PrivateKey.generate())
    responder = HandshakeState(initiator=False, static_key=X25519PrivateKey.generate())
    with pytest.raises(LocalProtocolError):
        responder.write_message(b"")
    with pytest.raises(LocalProtocolError):
        initiator.read_message(bytes(64))
    with pytest.raises(LocalProtocolError):
        initiator.split()
    responder.read_message(initiator.write_message(b""))
    with pytest.raises(LocalProtocolError):
        initiator.write_message(b"")


def test_handshake_state_refuses_oversized_message() -> None:
    initiator = HandshakeState(initiator=True, static_key=X25519PrivateKey.generate())
    with pytest.raises(LocalProtocolError):
        initiator.write_message(bytes(MAX_MESSAGE_LEN - 32 + 1))


def test_handshake_state_truncated_message_is_decode_error() -> None:
    responder = HandshakeState(initiator=False, static_key=X25519PrivateKey.generate())
    with pytest.raises(DecodeError):
        responder.read_message(bytes(31))


def test_all_zero_dh_result_is_refused() -> None:
    # The all-zero point is a low-order point: X25519 with it is all zeros (RFC 7748 6.1).
    initiator = HandshakeState(initiator=True, static_key=X25519PrivateKey.generate())
    initiator.write_message(b"")
    with pytest.raises(RemoteProtocolError, match="all-zero"):
        initiator.read_message(bytes(32) + bytes(48) + bytes(16))


# ---------------------------------------------------------------------------------------
# Handshake payload codec
# ---------------------------------------------------------------------------------------

PAYLOAD_VECTORS = [
    (NoiseHandshakePayload(), ""),
    (NoiseHandshakePayload(identity_key=b"\x01", identity_sig=b"\x02"), "0a0101120102"),
    (
        NoiseHandshakePayload(
            identity_key=b"\x01",
            identity_sig=b"\x02",
            extensions=NoiseExtensions(stream_muxers=("/yamux/1.0.0",)),
        ),
        "0a0101120102" + "220e" + "120c" + b"/yamux/1.0.0".hex(),
    ),
    (
        NoiseHandshakePayload(
            extensions=NoiseExtensions(
                webtransport_certhashes=(b"\xaa\xbb",), stream_muxers=("/a", "/b")
            )
        ),
        "220c" + "0a02aabb" + "1202" + b"/a".hex() + "1202" + b"/b".hex(),
    ),
]


@pytest.mark.parametrize(("payload", "encoded"), PAYLOAD_VECTORS)
def test_payload_encode_decode(payload: NoiseHandshakePayload, encoded: str) -> None:
    assert payload.encode().hex() == encoded
    assert NoiseHandshakePayload.decode(bytes.fromhex(encoded)) == payload


def test_payload_decode_skips_unknown_fields_and_merges_extensions() -> None:
    data = bytes.fromhex(
        "1801"  # field 3 (varint), unknown
        "0a0101"
        "2204" + "1202" + b"/a".hex() + "2204" + "1202" + b"/b".hex()
    )
    decoded = NoiseHandshakePayload.decode(data)
    assert decoded.identity_key == b"\x01"
    assert decoded.extensions == NoiseExtensions(stream_muxers=("/a", "/b"))


@pytest.mark.parametrize(
    "data",
    [
        "0a",  # truncated key
        "0a05aa",  # truncated value
        "0801",  # identity_key with the varint wire type
        "2203120180",  # muxer name that is not UTF-8
        "2202ff01",  # extensions that are not a protobuf message
    ],
)
def test_payload_decode_rejects_malformed(data: str) -> None:
    with pytest.raises(DecodeError):
        NoiseHandshakePayload.decode(bytes.fromhex(data))


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_payload_decode_arbitrary_bytes_raises_only_decode_error(data: bytes) -> None:
    try:
        payload = NoiseHandshakePayload.decode(data)
    except DecodeError:
        return
    assert isinstance(payload, NoiseHandshakePayload)
    assert NoiseHandshakePayload.decode(payload.encode()) == payload


@settings(max_examples=300)
@given(st.binary(max_size=100))
def test_extensions_decode_arbitrary_bytes_raises_only_decode_error(data: bytes) -> None:
    try:
        extensions = NoiseExtensions.decode(data)
    except DecodeError:
        return
    assert NoiseExtensions.decode(extensions.encode()) == extensions


# ---------------------------------------------------------------------------------------
# libp2p Noise connection
# ---------------------------------------------------------------------------------------

ALICE = KeyPair.from_seed(bytes(range(32)))
BOB = KeyPair.from_seed(bytes(range(32, 64)))
MALLORY = KeyPair.from_seed(bytes(range(64, 96)))

Event = HandshakeComplete | Data


def frame(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


def unframe(data: bytes) -> list[bytes]:
    frames = []
    pos = 0
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 2], "big")
        frames.append(data[pos + 2 : pos + 2 + length])
        pos += 2 + length
    assert pos == len(data)
    return frames


def drain(conn: NoiseConnection) -> list[Event]:
    events: list[Event] = []
    while (event := conn.next_event()) is not NEED_DATA:
        events.append(event)
    return events


class ConnectionPair:
    """An initiator and a responder wired back to back (h11 tests' ConnectionPair)."""

    def __init__(self, initiator: dict[str, Any] | None = None, **responder: Any) -> None:
        self.conns = {
            Role.INITIATOR: NoiseConnection(Role.INITIATOR, ALICE, **(initiator or {})),
            Role.RESPONDER: NoiseConnection(Role.RESPONDER, BOB, **responder),
        }
        self.events: dict[Role, list[Event]] = {Role.INITIATOR: [], Role.RESPONDER: []}

    @staticmethod
    def other(role: Role) -> Role:
        return Role.RESPONDER if role is Role.INITIATOR else Role.INITIATOR

    def deliver(self, to: Role, data: bytes | bytearray) -> list[Event]:
        self.conns[to].receive_data(data)
        events = drain(self.conns[to])
        self.events[to] += events
        return events

    def handshake(self) -> None:
        moved = True
        while moved:
            moved = False
            for role in Role:
                out = self.conns[role].data_to_send()
                if out:
                    moved = True
                    self.deliver(self.other(role), out)

    def send(self, sender: Role, data: bytes) -> bytes:
        """Send ``data`` from ``sender``; return what the other side received."""
        events = self.deliver(self.other(sender), self.conns[sender].send(data))
        assert all(isinstance(e, Data) for e in events)
        return b"".join(e.data for e in events if isinstance(e, Data))


def test_handshake_round_trip_exchanges_identities_and_muxers() -> None:
    pair = ConnectionPair(
        initiator={"stream_muxers": ["/yamux/1.0.0", "/mplex/6.7.0"], "expected_peer": BOB.peer_id},
        stream_muxers=["/yamux/1.0.0"],
    )
    initiator, responder = pair.conns[Role.INITIATOR], pair.conns[Role.RESPONDER]
    assert initiator.state is NoiseState.HANDSHAKING
    assert responder.state is NoiseState.HANDSHAKING
    pair.handshake()
    assert pair.events[Role.INITIATOR] == [
        HandshakeComplete(BOB.peer_id, BOB.public_key, ("/yamux/1.0.0",))
    ]
    assert pair.events[Role.RESPONDER] == [
        HandshakeComplete(ALICE.peer_id, ALICE.public_key, ("/yamux/1.0.0", "/mplex/6.7.0"))
    ]
    assert {initiator.state, responder.state} == {NoiseState.TRANSPORT}
    assert initiator.remote_peer == BOB.peer_id
    assert responder.remote_peer == ALICE.peer_id
    assert initiator.handshake_hash is not None
    assert initiator.handshake_hash == responder.handshake_hash


def test_handshake_message_sizes_and_flow() -> None:
    initiator = NoiseConnection(Role.INITIATOR, ALICE)
    responder = NoiseConnection(Role.RESPONDER, BOB, stream_muxers=["/yamux/1.0.0"])
    msg1 = unframe(initiator.data_to_send())
    assert [len(m) for m in msg1] == [32]  # e, empty payload, no key yet so no tag
    assert initiator.data_to_send() == b""
    responder.receive_data(frame(msg1[0]))
    assert responder.next_event() is NEED_DATA
    msg2 = unframe(responder.data_to_send())
    assert len(msg2) == 1
    initiator.receive_data(frame(msg2[0]))
    event = initiator.next_event()
    assert isinstance(event, HandshakeComplete)
    msg3 = unframe(initiator.data_to_send())
    assert len(msg3) == 1
    # e + encrypted s + tag + payload tag, and encrypted s + tag + payload tag.
    payload2 = len(msg2[0]) - 32 - 48 - 16
    payload3 = len(msg3[0]) - 48 - 16
    ed25519_payload = 2 + 36 + 2 + 64  # identity_key and identity_sig fields
    assert payload2 == ed25519_payload + 2 + 2 + len("/yamux/1.0.0")
    assert payload3 == ed25519_payload


@pytest.mark.parametrize("sender", list(Role), ids=lambda r: r.value)
@pytest.mark.parametrize("size", [1, 100, MAX_PLAINTEXT_LEN, MAX_PLAINTEXT_LEN + 1, 300_000])
def test_transport_round_trip(sender: Role, size: int) -> None:
    pair = ConnectionPair()
    pair.handshake()
    data = bytes(i % 251 for i in range(size))
    assert pair.send(sender, data) == data
    assert pair.send(pair.other(sender), data[::-1]) == data[::-1]
    assert pair.send(sender, b"again") == b"again"


def test_send_empty_produces_nothing() -> None:
    pair = ConnectionPair()
    pair.handshake()
    assert pair.conns[Role.INITIATOR].send(b"") == b""
    assert pair.send(Role.INITIATOR, b"x") == b"x"


@pytest.mark.parametrize(
    ("size", "frame_sizes"),
    [
        (MAX_PLAINTEXT_LEN, [MAX_MESSAGE_LEN]),
        (MAX_PLAINTEXT_LEN + 1, [MAX_MESSAGE_LEN, 1 + 16]),
        (3 * MAX_PLAINTEXT_LEN + 7, [MAX_MESSAGE_LEN] * 3 + [7 + 16]),
        (10, [26]),
    ],
)
def test_large_writes_are_chunked(size: int, frame_sizes: list[int]) -> None:
    pair = ConnectionPair()
    pair.handshake()
    wire = bytes(pair.conns[Role.INITIATOR].send(bytes(size)))
    assert [len(f) for f in unframe(wire)] == frame_sizes
    events = pair.deliver(Role.RESPONDER, wire)
    assert [len(e.data) for e in events if isinstance(e, Data)] == [s - 16 for s in frame_sizes]


def test_send_accepts_bytearray_and_memoryview() -> None:
    pair = ConnectionPair()
    pair.handshake()
    initiator = pair.conns[Role.INITIATOR]
    pair.deliver(Role.RESPONDER, initiator.send(bytearray(b"ab")))
    pair.deliver(Role.RESPONDER, initiator.send(memoryview(b"xxcdxx")[2:4]))
    assert [e for e in pair.events[Role.RESPONDER] if isinstance(e, Data)] == [
        Data(b"ab"),
        Data(b"cd"),
    ]


@pytest.mark.parametrize("collect_first", [True, False])
def test_initiator_pipelines_data_after_message_3(collect_first: bool) -> None:
    initiator = NoiseConnection(Role.INITIATOR, ALICE)
    responder = NoiseConnection(Role.RESPONDER, BOB)
    responder.receive_data(initiator.data_to_send())
    drain(responder)
    initiator.receive_data(responder.data_to_send())
    assert isinstance(initiator.next_event(), HandshakeComplete)
    # Either the driver collects message 3 first, or send() puts it in front itself.
    wire = initiator.data_to_send() if collect_first else b""
    wire += initiator.send(b"first request")
    wire += initiator.send(b"second")
    assert initiator.data_to_send() == b""
    responder.receive_data(wire)
    assert drain(responder) == [
        HandshakeComplete(ALICE.peer_id, ALICE.public_key, ()),
        Data(b"first request"),
        Data(b"second"),
    ]


def test_byte_at_a_time_delivery() -> None:
    initiator = NoiseConnection(Role.INITIATOR, ALICE)
    responder = NoiseConnection(Role.RESPONDER, BOB)
    events: dict[str, list[Event]] = {"i": [], "r": []}

    def trickle(data: bytes, conn: NoiseConnection, key: str) -> None:
        for i in range(len(data)):
            conn.receive_data(data[i : i + 1])
            events[key] += drain(conn)

    trickle(initiator.data_to_send(), responder, "r")
    trickle(responder.data_to_send(), initiator, "i")
    trickle(bytes(initiator.send(b"hello")), responder, "r")
    assert events["i"] == [HandshakeComplete(BOB.peer_id, BOB.public_key, ())]
    assert events["r"] == [HandshakeComplete(ALICE.peer_id, ALICE.public_key, ()), Data(b"hello")]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3000), max_size=8), st.binary(max_size=3000))
def test_arbitrary_split_points_give_same_stream(cuts: list[int], data: bytes) -> None:
    pair = ConnectionPair()
    pair.handshake()
    wire = bytes(pair.conns[Role.RESPONDER].send(data)) + bytes(
        pair.conns[Role.RESPONDER].send(b"tail")
    )
    points = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    received = b""
    for start, end in itertools.pairwise(points):
        pair.conns[Role.INITIATOR].receive_data(wire[start:end])
        received += b"".join(
            e.data for e in drain(pair.conns[Role.INITIATOR]) if isinstance(e, Data)
        )
    assert received == data + b"tail"


def _ecdsa_pair() -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return KeyPair(key, PublicKey(KeyType.ECDSA, der))


def _secp256k1_pair() -> KeyPair:
    key = ec.generate_private_key(ec.SECP256K1())
    point = key.public_key().public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    return KeyPair(key, PublicKey(KeyType.Secp256k1, point))


def _rsa_pair() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return KeyPair(key, PublicKey(KeyType.RSA, der))


@pytest.mark.parametrize("make_pair", [_ecdsa_pair, _secp256k1_pair, _rsa_pair])
def test_other_identity_key_types_authenticate(make_pair: Callable[[], KeyPair]) -> None:
    identity = make_pair()
    initiator = NoiseConnection(Role.INITIATOR, identity)
    responder = NoiseConnection(Role.RESPONDER, BOB, expected_peer=None)
    responder.receive_data(initiator.data_to_send())
    drain(responder)
    initiator.receive_data(responder.data_to_send())
    assert drain(initiator) == [HandshakeComplete(BOB.peer_id, BOB.public_key, ())]
    responder.receive_data(initiator.data_to_send())
    assert drain(responder) == [
        HandshakeComplete(PeerID.from_public_key(identity.public_key), identity.public_key, ())
    ]


def test_injected_keys_make_the_handshake_deterministic() -> None:
    def run() -> list[bytes]:
        keys = [X25519PrivateKey.from_private_bytes(bytes([i]) * 32) for i in range(1, 5)]
        initiator = NoiseConnection(
            Role.INITIATOR, ALICE, static_key=keys[0], ephemeral_key=keys[1], prologue=b"p"
        )
        responder = NoiseConnection(
            Role.RESPONDER, BOB, static_key=keys[2], ephemeral_key=keys[3], prologue=b"p"
        )
        wire = [initiator.data_to_send()]
        responder.receive_data(wire[-1])
        drain(responder)
        wire.append(responder.data_to_send())
        initiator.receive_data(wire[-1])
        drain(initiator)
        wire.append(initiator.data_to_send())
        responder.receive_data(wire[-1])
        assert len(drain(responder)) == 1
        return wire

    first = run()
    assert first == run()
    # Message 1 is the injected ephemeral public key, in the clear.
    e_pub = X25519PrivateKey.from_private_bytes(bytes([2]) * 32).public_key()
    assert first[0] == frame(e_pub.public_bytes(Encoding.Raw, PublicFormat.Raw))


def test_mismatched_prologue_fails() -> None:
    initiator = NoiseConnection(Role.INITIATOR, ALICE, prologue=b"one")
    responder = NoiseConnection(Role.RESPONDER, BOB, prologue=b"two")
    responder.receive_data(initiator.data_to_send())
    drain(responder)
    initiator.receive_data(responder.data_to_send())
    with pytest.raises(DecryptionError):
        initiator.next_event()


# -- peers that misbehave -----------------------------------------------------------------


def signed_payload(
    identity: KeyPair,
    static_public: bytes,
    *,
    sign_with: KeyPair | None = None,
    signed_data: bytes | None = None,
) -> bytes:
    signer = sign_with or identity
    message = (
        signed_data if signed_data is not None else STATIC_KEY_SIGNATURE_PREFIX + static_public
    )
    return NoiseHandshakePayload(
        identity_key=identity.public_key.to_protobuf(), identity_sig=signer.sign(message)
    ).encode()


PayloadMaker = Callable[[bytes], bytes]

BAD_PAYLOADS: list[tuple[str, PayloadMaker, type[ProtocolError]]] = [
    (
        "signed-by-other-key",
        lambda s: signed_payload(MALLORY, s, sign_with=BOB),
        InvalidSignatureError,
    ),
    (
        "signature-over-wrong-key",
        lambda s: signed_payload(MALLORY, bytes(32)),
        InvalidSignatureError,
    ),
    (
        "signature-without-prefix",
        lambda s: signed_payload(MALLORY, s, signed_data=s),
        InvalidSignatureError,
    ),
    ("empty-payload", lambda s: b"", DecodeError),
    ("garbage-payload", lambda s: b"\xff\xff\xff", DecodeError),
    (
        "garbage-identity-key",
        lambda s: NoiseHandshakePayload(identity_key=b"\x08\x01", identity_sig=b"x").encode(),
        DecodeError,
    ),
    (
        "missing-signature",
        lambda s: NoiseHandshakePayload(identity_key=MALLORY.public_key.to_protobuf()).encode(),
        DecodeError,
    ),
]


def _assert_failed(conn: NoiseConnection) -> None:
    assert conn.state is NoiseState.FAILED
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"x")
    with pytest.raises(LocalProtocolError):
        conn.send(b"x")
    with pytest.raises(LocalProtocolError):
        conn.data_to_send()


@pytest.mark.parametrize(("name", "make", "error"), BAD_PAYLOADS, ids=[b[0] for b in BAD_PAYLOADS])
def test_initiator_refuses_bad_responder_payload(
    name: str, make: PayloadMaker, error: type[ProtocolError]
) -> None:
    initiator = NoiseConnection(Role.INITIATOR, ALICE)
    rogue = HandshakeState(initiator=False, static_key=X25519PrivateKey.generate())
    (msg1,) = unframe(initiator.data_to_send())
    rogue.read_message(msg1)
    initiator.receive_data(frame(rogue.write_message(make(rogue.local_static))))
    with pytest.raises(error) as info:
        initiator.next_event()
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.hint
    _assert_failed(initiator)


@pytest.mark.parametrize(("name", "make", "error"), BAD_PAYLOADS, ids=[b[0] for b in BAD_PAYLOADS])
def test_responder_refuses_bad_initiator_payload(
    name: str, make: PayloadMaker, error: type[ProtocolError]
) -> None:
    responder = NoiseConnection(Role.RESPONDER, BOB)
    rogue = HandshakeState(initiator=True, static_key=X25519PrivateKey.generate())
    responder.receive_data(frame(rogue.write_message(b"")))
    assert responder.next_event() is NEED_DATA
    (msg2,) = unframe(responder.data_to_send())
    rogue.read_message(msg2)
    responder.receive_data(frame(rogue.write_message(make(rogue.local_static))))
    with pytest.raises(error):
        responder.next_event()
    _assert_failed(responder)


def test_well_formed_manual_peer_is_accepted() -> None:
    # The control for the two tests above: a correct payload from the same rogue code path.
    initiator = NoiseConnection(Role.INITIATOR, ALICE)
    peer = HandshakeState(initiator=False, static_key=X25519PrivateKey.generate())
    (msg1,) = unframe(initiator.data_to_send())
    peer.read_message(msg1)
    initiator.receive_data(frame(peer.write_message(signed_payload(MALLORY, peer.local_static))))
    assert initiator.next_event() == HandshakeComplete(MALLORY.peer_id, MALLORY.public_key, ())


def test_message_1_payload_is_ignored() -> None:
    responder = NoiseConnection(Role.RESPONDER, BOB)
    peer = HandshakeState(initiator=True, static_key=X25519PrivateKey.generate())
    responder.receive_data(frame(peer.write_message(b"unauthenticated early bytes")))
    assert responder.next_event() is NEED_DATA
    (msg2,) = unframe(responder.data_to_send())
    assert NoiseHandshakePayload.decode(peer.read_message(msg2)).identity_key == (
        BOB.public_key.to_protobuf()
    )


@pytest.mark.parametrize("side", ["initiator", "responder"])
def test_unexpected_peer_id_is_refused(side: str) -> None:
    kwargs: dict[str, Any] = {"expected_peer": MALLORY.peer_id}
    pair = ConnectionPair(initiator=kwargs) if side == "initiator" else ConnectionPair(**kwargs)
    with pytest.raises(PeerMismatchError) as info:
        pair.handshake()
    assert isinstance(info.value, RemoteProtocolError)
    assert str(BOB.peer_id if side == "initiator" else ALICE.peer_id) in str(info.value)
    role = Role.INITIATOR if side == "initiator" else Role.RESPONDER
    _assert_failed(pair.conns[role])


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (frame(b"short"), DecodeError),  # shorter than an ephemeral key
        (frame(b""), DecodeError),
        (frame(b"\x42" * 200), DecryptionError),  # right size, but the static key is not sealed
        (b"GET / HTTP/1.1\r\n" + b"x" * 0x4745, DecryptionError),
    ],
)
def test_initiator_refuses_garbage_handshake(wire: bytes, error: type[ProtocolError]) -> None:
    initiator = NoiseConnection(Role.INITIATOR, ALICE)
    initiator.receive_data(wire)
    with pytest.raises(error):
        initiator.next_event()
    _assert_failed(initiator)


def test_responder_refuses_garbage_handshake() -> None:
    responder = NoiseConnection(Role.RESPONDER, BOB)
    responder.receive_data(frame(b"\x13/multistream/1.0.0\n"))
    with pytest.raises(DecodeError):
        responder.next_event()
    _assert_failed(responder)
    # Message 1 is unauthenticated; garbage there surfaces as soon as message 3 arrives.
    responder = NoiseConnection(Role.RESPONDER, BOB)
    responder.receive_data(frame(b"\x42" * 32) + frame(b"\x42" * 100))
    with pytest.raises(DecryptionError):
        responder.next_event()
    _assert_failed(responder)


def test_tampered_handshake_message_is_refused() -> None:
    initiator = NoiseConnection(Role.INITIATOR, ALICE)
    responder = NoiseConnection(Role.RESPONDER, BOB)
    responder.receive_data(initiator.data_to_send())
    drain(responder)
    msg2 = bytearray(responder.data_to_send())
    msg2[-1] ^= 0x80
    initiator.receive_data(msg2)
    with pytest.raises(DecryptionError):
        initiator.next_event()
    _assert_failed(initiator)


@pytest.mark.parametrize("position", [2, 10, -17, -1])
def test_tampered_ciphertext_is_refused(position: int) -> None:
    pair = ConnectionPair()
    pair.handshake()
    wire = bytearray(pair.conns[Role.INITIATOR].send(b"attack at dawn"))
    wire[position] ^= 0x01
    responder = pair.conns[Role.RESPONDER]
    responder.receive_data(wire)
    with pytest.raises(DecryptionError) as info:
        responder.next_event()
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.hint == "noise decrypt failed"
    _assert_failed(responder)


def test_replayed_frame_is_refused() -> None:
    pair = ConnectionPair()
    pair.handshake()
    wire = bytes(pair.conns[Role.INITIATOR].send(b"once"))
    assert pair.deliver(Role.RESPONDER, wire) == [Data(b"once")]
    with pytest.raises(DecryptionError):
        pair.deliver(Role.RESPONDER, wire)


def test_send_before_handshake_is_local_error() -> None:
    initiator = NoiseConnection(Role.INITIATOR, ALICE)
    with pytest.raises(LocalProtocolError):
        initiator.send(b"too early")
    with pytest.raises(LocalProtocolError):
        initiator.set_nonces_for_testing(send=0)
    # API misuse is refused without failing the connection.
    assert initiator.state is NoiseState.HANDSHAKING


def test_stream_muxers_must_be_a_sequence_of_names() -> None:
    with pytest.raises(TypeError):
        NoiseConnection(Role.INITIATOR, ALICE, stream_muxers="/yamux/1.0.0")


def test_send_nonce_exhaustion_is_refused() -> None:
    pair = ConnectionPair()
    pair.handshake()
    initiator = pair.conns[Role.INITIATOR]
    initiator.set_nonces_for_testing(send=MAX_NONCE - 1)
    pair.conns[Role.RESPONDER].set_nonces_for_testing(receive=MAX_NONCE - 1)
    assert pair.send(Role.INITIATOR, b"last one") == b"last one"
    with pytest.raises(NonceExhaustedError):
        initiator.send(b"one too many")
    _assert_failed(initiator)


def test_send_nonce_exhaustion_mid_write_is_refused() -> None:
    pair = ConnectionPair()
    pair.handshake()
    initiator = pair.conns[Role.INITIATOR]
    initiator.set_nonces_for_testing(send=MAX_NONCE - 1)
    with pytest.raises(NonceExhaustedError):
        initiator.send(bytes(MAX_PLAINTEXT_LEN + 1))  # needs two frames, only one nonce left
    _assert_failed(initiator)


def test_receive_nonce_exhaustion_is_refused() -> None:
    pair = ConnectionPair()
    pair.handshake()
    pair.conns[Role.INITIATOR].set_nonces_for_testing(send=MAX_NONCE - 1)
    responder = pair.conns[Role.RESPONDER]
    responder.set_nonces_for_testing(receive=MAX_NONCE)
    responder.receive_data(pair.conns[Role.INITIATOR].send(b"x"))
    with pytest.raises(NonceExhaustedError):
        responder.next_event()
    _assert_failed(responder)


# -- Hypothesis: arbitrary bytes only ever raise typed errors -----------------------------


def _feed(conn: NoiseConnection, data: bytes) -> None:
    try:
        conn.receive_data(data)
        drain(conn)
    except ProtocolError:
        assert conn.state is NoiseState.FAILED
        return
    assert conn.state is not NoiseState.FAILED


@settings(max_examples=300)
@given(st.binary(max_size=300), st.booleans())
def test_fresh_responder_arbitrary_bytes(data: bytes, framed: bool) -> None:
    _feed(NoiseConnection(Role.RESPONDER, BOB), frame(data) if framed else data)


@settings(max_examples=300)
@given(st.binary(max_size=300), st.booleans())
def test_fresh_initiator_arbitrary_bytes(data: bytes, framed: bool) -> None:
    _feed(NoiseConnection(Role.INITIATOR, ALICE), frame(data) if framed else data)


@settings(max_examples=200)
@given(st.binary(max_size=300), st.booleans())
def test_responder_arbitrary_message_3(data: bytes, framed: bool) -> None:
    responder = NoiseConnection(Role.RESPONDER, BOB)
    responder.receive_data(NoiseConnection(Role.INITIATOR, ALICE).data_to_send())
    drain(responder)
    _feed(responder, frame(data) if framed else data)


@settings(max_examples=200)
@given(st.binary(max_size=300), st.booleans())
def test_transport_arbitrary_bytes(data: bytes, framed: bool) -> None:
    pair = ConnectionPair()
    pair.handshake()
    _feed(pair.conns[Role.RESPONDER], frame(data) if framed else data)


def test_read_into_decrypts_every_whole_frame_that_fits() -> None:
    pair = ConnectionPair()
    pair.handshake()
    sender, receiver = pair.conns[Role.INITIATOR], pair.conns[Role.RESPONDER]
    message = bytes(range(256)) * 600  # 153,600 bytes: three frames
    wire = bytes(sender.send(message))
    receiver.receive_data(wire[:-5])  # the last frame is incomplete
    out = bytearray(200_000)
    count = receiver.read_into(out)
    assert count == 2 * MAX_PLAINTEXT_LEN
    assert out[:count] == message[:count]
    assert receiver.has_partial_frame()
    assert receiver.read_into(out) == 0
    receiver.receive_data(wire[-5:])
    assert receiver.read_into(out) == len(message) - count
    assert not receiver.has_partial_frame()


def test_read_into_leaves_a_frame_that_does_not_fit_for_next_event() -> None:
    pair = ConnectionPair()
    pair.handshake()
    receiver = pair.conns[Role.RESPONDER]
    receiver.receive_data(pair.conns[Role.INITIATOR].send(b"x" * 100))
    assert receiver.read_into(bytearray(99)) == 0
    assert receiver.next_event() == Data(b"x" * 100)


def test_read_into_refuses_tampered_frames() -> None:
    pair = ConnectionPair()
    pair.handshake()
    wire = bytearray(pair.conns[Role.INITIATOR].send(b"attack at dawn"))
    wire[-1] ^= 0x01
    receiver = pair.conns[Role.RESPONDER]
    receiver.receive_data(wire)
    with pytest.raises(DecryptionError):
        receiver.read_into(bytearray(100))
    _assert_failed(receiver)


def test_receive_buffer_accepts_bytes_written_in_place() -> None:
    pair = ConnectionPair()
    pair.handshake()
    receiver = pair.conns[Role.RESPONDER]
    for size in (10, 70_000, 3):
        wire = bytes(pair.conns[Role.INITIATOR].send(b"y" * size))
        pos = 0
        while pos < len(wire):  # arrive in 4 KiB reads, as from recv_into
            with receiver.receive_buffer(4096) as view:
                chunk = wire[pos : pos + 4096]
                view[: len(chunk)] = chunk
            receiver.received(len(chunk))
            pos += len(chunk)
        got = b"".join(e.data for e in drain(receiver) if isinstance(e, Data))
        assert got == b"y" * size
    with pytest.raises(LocalProtocolError):
        receiver.received(10**9)


def test_send_gather_packs_parts_into_full_messages_as_send_packs_one_buffer() -> None:
    pair = ConnectionPair()
    pair.handshake()
    sender, receiver = pair.conns[Role.INITIATOR], pair.conns[Role.RESPONDER]
    parts: list[bytes | bytearray | memoryview] = [b"h" * 12, b"x" * 40_000, b"h" * 12]
    parts += [bytearray(b"y" * 70_000), b"", b"z" * 12, memoryview(b"w" * (MAX_PLAINTEXT_LEN - 12))]
    joined = b"".join(parts)
    receiver.receive_data(sender.send_gather(parts))
    messages = [e.data for e in drain(receiver) if isinstance(e, Data)]
    full, rest = divmod(len(joined), MAX_PLAINTEXT_LEN)
    assert [len(m) for m in messages] == [MAX_PLAINTEXT_LEN] * full + [rest]
    assert b"".join(messages) == joined


def test_send_gather_encrypts_a_message_inside_one_part_and_spans_parts() -> None:
    pair = ConnectionPair()
    pair.handshake()
    sender, receiver = pair.conns[Role.INITIATOR], pair.conns[Role.RESPONDER]
    big = bytes(range(256)) * 600  # 153,600 bytes: two messages inside it, then a short one
    tail = b"t" * 100  # completes the short one
    receiver.receive_data(sender.send_gather([big, tail]))
    messages = [e.data for e in drain(receiver) if isinstance(e, Data)]
    assert [len(m) for m in messages] == [MAX_PLAINTEXT_LEN, MAX_PLAINTEXT_LEN, 153_700 - 2 * 65519]
    assert b"".join(messages) == big + tail


def test_send_gather_into_a_large_enough_buffer_returns_a_view_of_it() -> None:
    pair = ConnectionPair()
    pair.handshake()
    sender, receiver = pair.conns[Role.INITIATOR], pair.conns[Role.RESPONDER]
    into = bytearray(100_000)
    wire = sender.send_gather([b"a" * 70_000], into)
    assert isinstance(wire, memoryview)
    assert wire.obj is into
    assert len(wire) == 70_000 + 2 * (FRAME_HEADER_LEN + TAGLEN)
    receiver.receive_data(wire)
    wire.release()
    small = bytearray(10)  # too small: a new buffer, ``small`` untouched
    other = sender.send_gather([b"b" * 100], small)
    assert isinstance(other, bytearray)
    assert small == bytearray(10)
    receiver.receive_data(other)
    got = b"".join(e.data for e in drain(receiver) if isinstance(e, Data))
    assert got == b"a" * 70_000 + b"b" * 100


def test_take_frames_detaches_whole_frames_within_the_limit_and_open_frames_decrypts_them() -> None:
    pair = ConnectionPair()
    pair.handshake()
    sender, receiver = pair.conns[Role.INITIATOR], pair.conns[Role.RESPONDER]
    message = bytes(range(256)) * 1024  # 262,144 bytes: four full frames and a short one
    wire = bytes(sender.send(message))
    receiver.receive_data(wire[:-5])  # the short last frame is incomplete
    assert receiver.whole_frames_plaintext(3 * MAX_PLAINTEXT_LEN) == 3 * MAX_PLAINTEXT_LEN
    assert receiver.whole_frames_plaintext(10**9) == 4 * MAX_PLAINTEXT_LEN
    batch = receiver.take_frames(3 * MAX_PLAINTEXT_LEN + 100)
    assert len(batch) == 3 * (2 + MAX_PLAINTEXT_LEN + 16)
    # Bytes go on arriving while the batch is away; it is opened first, as nonces require.
    receiver.receive_data(wire[-5:])
    out = bytearray(3 * MAX_PLAINTEXT_LEN)
    assert receiver.open_frames(batch, out) == len(out)
    assert out == message[: len(out)]
    rest = b"".join(e.data for e in drain(receiver) if isinstance(e, Data))
    assert rest == message[len(out) :]
    assert receiver.take_frames(10**9) == b""


def test_open_frames_refuses_a_tampered_batch_and_fails_the_connection() -> None:
    pair = ConnectionPair()
    pair.handshake()
    sender, receiver = pair.conns[Role.INITIATOR], pair.conns[Role.RESPONDER]
    receiver.receive_data(sender.send(b"q" * 200_000))
    batch = bytearray(receiver.take_frames(10**9))
    batch[100] ^= 0x01
    with pytest.raises(DecryptionError):
        receiver.open_frames(batch, bytearray(200_000))
    _assert_failed(receiver)


def test_open_frames_refuses_a_batch_that_is_not_whole_frames() -> None:
    pair = ConnectionPair()
    pair.handshake()
    sender, receiver = pair.conns[Role.INITIATOR], pair.conns[Role.RESPONDER]
    receiver.receive_data(sender.send(b"q" * 1000))
    batch = receiver.take_frames(10**9)
    with pytest.raises(LocalProtocolError):
        receiver.open_frames(batch[:-1], bytearray(1000))
    _assert_failed(receiver)
