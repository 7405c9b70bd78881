"""Tests of the multiaddr text and binary codecs (specs/multiaddr.md)."""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.errors import DecodeError
from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import (
    IP4,
    MAX_MULTIADDR_BYTES,
    P2P,
    PROTOCOLS,
    TCP,
    VARIABLE_SIZE,
    Component,
    Multiaddr,
    MultiaddrError,
    Protocol,
    TcpTarget,
    protocol_by_code,
    protocol_by_name,
    tcp_host_port,
    tcp_multiaddr,
)
from p2pchat.varint import encode_uvarint

SPEC = Path(__file__).resolve().parent.parent / "specs" / "multiaddr.md"

QM = "QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC"
QM_HEX = "a503221220d52ebb89d85b02a284948203a62ff28389c57c9f42beec4ec20db76a68911c0b"
QM_NNOO = "QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN"
# peer-ids.md Ed25519 vector (public key protobuf 080112201ed1e8fa...).
ED_A = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
ED_A_HEX = "a503260024080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
# from go-multiaddr's multiaddr_test.go
ED_B = "12D3KooWCryG7Mon9orvQxcS1rYZjotPgpwoJNHHKcLLfE4Hf5mV"
ED_B_HEX = "a503260024080112202d3de6d16ae87f7a933fe1552162a2d3f04951e90e8051e4ee2c18f002dd0fb4"
SJC = "sjc-1.bootstrap.libp2p.io"
SJC_HEX = "3819736a632d312e626f6f7473747261702e6c69627032702e696f"
V6 = "2001:8a0:7ac5:4201:3ac9:86ff:fe31:7095"
V6_HEX = "29200108a07ac542013ac986fffe317095"
V6_LOOPBACK_HEX = "2900000000000000000000000000000001"

# (canonical text, binary as hex). The first block is taken from the upstream test suites
# (multiformats/multiaddr test/multiaddr.feature, go-multiaddr multiaddr_test.go,
# rust-multiaddr tests/lib.rs); the second is derived from the encoding rules and checked
# byte by byte in specs/multiaddr.md. Both directions are tested from this one table.
VECTORS: list[tuple[str, str]] = [
    ("/ip4/192.0.2.42/tcp/443", "04c000022a0601bb"),
    ("/ip4/127.0.0.1/udp/1234", "047f000001910204d2"),
    ("/ip4/127.0.0.1/tcp/4321", "047f0000010610e1"),
    ("/ip4/127.0.0.1/udp/1234/ip4/127.0.0.1/tcp/4321", "047f000001910204d2047f0000010610e1"),
    ("/ip4/1.2.3.4", "0401020304"),
    ("/ip4/0.0.0.0", "0400000000"),
    ("/ip6/::1", "2900000000000000000000000000000001"),
    ("/ip6/2601:9:4f81:9700:803e:ca65:66e8:c21", "29260100094f819700803eca6566e80c21"),
    (
        "/ip6/fe80::9700:803e:ca65:66e8:c21/ip6zone/wlan0",
        "29fe80000000009700803eca6566e80c212a05776c616e30",
    ),
    ("/udp/0", "91020000"),
    ("/tcp/0", "060000"),
    ("/udp/1234", "910204d2"),
    ("/tcp/1234", "0604d2"),
    ("/udp/65535", "9102ffff"),
    ("/tcp/65535", "06ffff"),
    (f"/p2p/{QM}", QM_HEX),
    (f"/p2p/{QM}/tcp/1234", QM_HEX + "0604d2"),
    (f"/ip4/127.0.0.1/p2p/{QM}", "047f000001" + QM_HEX),
    (f"/ip4/127.0.0.1/p2p/{QM}/tcp/1234", "047f000001" + QM_HEX + "0604d2"),
    (f"/ip6/{V6}/tcp/8000/ws/p2p/{QM}", V6_HEX + "061f40dd03" + QM_HEX),
    (f"/ip6/{V6}/tcp/8000/wss/p2p/{QM}", V6_HEX + "061f40de03" + QM_HEX),
    (f"/ip4/127.0.0.1/tcp/9090/p2p-circuit/p2p/{QM}", "047f000001062382a202" + QM_HEX),
    (f"/dnsaddr/{SJC}", SJC_HEX),
    (
        f"/dnsaddr/{SJC}/tcp/1234/p2p/{QM_NNOO}",
        SJC_HEX
        + "0604d2a50322122006b3608aa000274049eb28ad8e793a26ff6fab281a7d3bd77cd18eb745dfaabb",
    ),
    ("/ip4/127.0.0.1/tcp/127/ws", "047f00000106007fdd03"),
    ("/ip4/127.0.0.1/tcp/127/tls", "047f00000106007fc003"),
    ("/ip4/127.0.0.1/tcp/127/tls/ws", "047f00000106007fc003dd03"),
    # derived
    ("/ip4/127.0.0.1/tcp/4001", "047f000001060fa1"),
    ("/ip4/127.0.0.1/udp/4001/quic-v1", "047f00000191020fa1cd03"),
    ("/ip4/127.0.0.1/udp/4001/quic", "047f00000191020fa1cc03"),
    ("/ip6/::ffff:1.2.3.4/tcp/1", "2900000000000000000000ffff01020304060001"),
    ("/dns/example.com/tcp/4001", "350b6578616d706c652e636f6d060fa1"),
    ("/dns4/example.com/tcp/443", "360b6578616d706c652e636f6d0601bb"),
    ("/dns6/example.com/tcp/4001", "370b6578616d706c652e636f6d060fa1"),
    ("/ip6zone/eth0/ip6/fe80::1/tcp/4001", "2a046574683029fe800000000000000000000000000001060fa1"),
    (f"/ip4/127.0.0.1/tcp/4001/p2p/{ED_A}", "047f000001060fa1" + ED_A_HEX),
    (f"/ip4/127.0.0.1/tcp/0/p2p/{ED_B}", "047f000001060000" + ED_B_HEX),
    (
        f"/ip6/::1/tcp/4001/p2p/{ED_A}/p2p-circuit",
        "29" + "00" * 15 + "01060fa1" + ED_A_HEX + "a202",
    ),
    (
        f"/ip4/127.0.0.1/tcp/4001/p2p/{ED_A}/p2p-circuit/p2p/{ED_B}",
        "047f000001060fa1" + ED_A_HEX + "a202" + ED_B_HEX,
    ),
]


@pytest.mark.parametrize(("text", "hex_"), VECTORS)
def test_vector_encodes(text: str, hex_: str) -> None:
    assert Multiaddr.from_string(text).to_bytes().hex() == hex_


@pytest.mark.parametrize(("text", "hex_"), VECTORS)
def test_vector_decodes(text: str, hex_: str) -> None:
    ma = Multiaddr.from_bytes(bytes.fromhex(hex_))
    assert str(ma) == text
    assert ma == Multiaddr.from_string(text)


def test_spec_lists_the_same_vectors() -> None:
    rows = re.findall(r"^\| `(/[^`]*)` \| `([0-9a-f]+)` \|", SPEC.read_text(), re.MULTILINE)
    assert rows, "no vector table found in specs/multiaddr.md"
    assert sorted(rows) == sorted(VECTORS)


# Accepted text that prints differently: (input, canonical text).
NON_CANONICAL: list[tuple[str, str]] = [
    (f"/ipfs/{QM}", f"/p2p/{QM}"),
    (f"/ip4/127.0.0.1/ipfs/{QM}/tcp/1234", f"/ip4/127.0.0.1/p2p/{QM}/tcp/1234"),
    # go-multiaddr: the same peer as a CIDv1 (sha2-256 multihash, libp2p-key codec)
    ("/p2p/bafzbeigvf25ytwc3akrijfecaotc74udrhcxzh2cx3we5qqnw5vgrei4bm", f"/p2p/{QM}"),
    (f"/p2p/{PeerID.from_string(ED_A).to_cid()}", f"/p2p/{ED_A}"),
    ("/ip4/127.0.0.1/tcp/1234/", "/ip4/127.0.0.1/tcp/1234"),
    ("/p2p-circuit/", "/p2p-circuit"),
    ("/tcp/0080", "/tcp/80"),
    ("/udp/00000", "/udp/0"),
    ("/ip6/2001:DB8:0:0:0:0:0:1", "/ip6/2001:db8::1"),
    ("/ip6/0:0:0:0:0:0:0:0", "/ip6/::"),
    ("/ip6/::ffff:102:304", "/ip6/::ffff:1.2.3.4"),
    ("/ip6/::FFFF:1.2.3.4", "/ip6/::ffff:1.2.3.4"),
]


@pytest.mark.parametrize(("text", "canonical"), NON_CANONICAL)
def test_non_canonical_text_prints_canonically(text: str, canonical: str) -> None:
    ma = Multiaddr.from_string(text)
    assert str(ma) == canonical
    assert ma == Multiaddr.from_string(canonical)
    assert ma.to_bytes() == Multiaddr.from_string(canonical).to_bytes()


# (text, expected hint)
INVALID_TEXT: list[tuple[str, str]] = [
    ("", "empty multiaddr"),
    ("/", "empty multiaddr"),
    ("ip4/1.2.3.4", "must start with /"),
    (" /ip4/1.2.3.4", "must start with /"),
    ("//ip4/1.2.3.4", "empty segment"),
    ("/ip4/1.2.3.4//tcp/1", "empty segment"),
    ("/ip4/1.2.3.4/tcp/1//", "empty segment"),
    ("/ip4", "missing value"),
    ("/ip4/", "missing value"),
    ("/ip4//tcp/1", "missing value"),
    ("/ip6", "missing value"),
    ("/udp", "missing value"),
    ("/tcp", "missing value"),
    ("/dns4", "missing value"),
    ("/ipfs", "missing value"),
    ("/ip6zone", "missing value"),
    ("/ip6zone//ip6/fe80::1", "missing value"),
    ("/ip4/127.0.0.1/udp", "missing value"),
    ("/ip4/127.0.0.1/tcp", "missing value"),
    ("/ip4/127.0.0.1/p2p", "missing value"),
    ("/ip4/::1", "bad ip4"),
    ("/ip4/fdpsofodsajfdoisa", "bad ip4"),
    ("/ip4/1.2.3", "bad ip4"),
    ("/ip4/1.2.3.04", "bad ip4"),
    ("/ip4/256.0.0.1", "bad ip4"),
    ("/ip4/1.2.3.4 ", "bad ip4"),
    ("/ip6/1.2.3.4", "bad ip6"),
    ("/ip6/::g", "bad ip6"),
    ("/ip6/1:2:3:4:5:6:7:8:9", "bad ip6"),
    ("/ip6/fe80::1%eth0", "bad ip6"),
    ("/tcp/65536", "bad port"),
    ("/udp/65536", "bad port"),
    ("/tcp/-1", "bad port"),
    ("/tcp/+1", "bad port"),
    ("/tcp/ 1", "bad port"),
    ("/tcp/1_0", "bad port"),
    ("/tcp/0x10", "bad port"),
    ("/tcp/\u0661\u0662", "bad port"),  # Arabic-Indic digits: int() would accept them
    ("/tcp/9999999999999999999999", "bad port"),
    ("/ip4/127.0.0.1/tcp/jfodsajfidosajfoidsa", "bad port"),
    ("/dns/" + "a" * 256, "bad dns"),
    ("/dns4/" + "\u00e9" * 128, "bad dns4"),  # 256 bytes of UTF-8
    ("/dns/\ud800", "bad dns"),  # a lone surrogate has no UTF-8 form
    ("/ip6zone/\udfff/ip6/fe80::1", "bad ip6zone"),
    ("/ip4/127.0.0.1/p2p/tcp", "bad peer id"),
    ("/p2p/QmxoHT6iViN5xAjoz1VZ553cL31U9F94ht3QvWR1FrEbZY", "bad peer id"),  # digest > 32
    ("/p2p/k2k4r8oqamigqdo6o7hsbfwd45y70oyynp98usk7zmyfrzpqxh1pohl-", "bad peer id"),
    ("/p2p/?unknownmultibase", "bad peer id"),
    ("/p2p/bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", "bad peer id"),  # dag-pb
    (f"/p2p/{ED_A[:-1]}", "bad peer id"),
    (f"/p2p/{ED_A}0", "bad peer id"),  # '0' is not base58
    ("/unknown/1.2.3.4", "unknown protocol"),
    ("/IP4/1.2.3.4", "unknown protocol"),
    ("/onion/aaimaq4ygg2iegci:80", "unknown protocol"),
    ("/ip4/1.2.3.4/tcp/1/sctp/1", "unknown protocol"),
    ("/quic-v1/1234", "unknown protocol"),
    ("/p2p-circuit/50", "unknown protocol"),
    ("/ip4/127.0.0.1/udp/1234/quic-v1/1234", "unknown protocol"),
    ("/ip4/1.2.3.4/tcp/80/ws/x", "unknown protocol"),
    ("/dns/" + "a" * 9000, "too long"),
    ("/dns/" + "a" * 250 + "/dns/" + "b" * 250 + "/dns/c" * 250, "too long"),  # > 1024 bytes
    ("/dns4/" + ("a" * 250 + "/dns4/") * 5 + "x", "too long"),
]


@pytest.mark.parametrize(("text", "hint"), INVALID_TEXT)
def test_invalid_text_raises_typed_error(text: str, hint: str) -> None:
    with pytest.raises(MultiaddrError) as info:
        Multiaddr.from_string(text)
    assert info.value.hint == hint
    assert isinstance(info.value, DecodeError)


def test_unknown_name_after_valueless_protocol_says_so() -> None:
    with pytest.raises(MultiaddrError, match=r"quic-v1 takes no value"):
        Multiaddr.from_string("/ip4/127.0.0.1/udp/1/quic-v1/1234")


# (hex, expected hint)
INVALID_BYTES: list[tuple[str, str]] = [
    ("", "empty multiaddr"),
    ("04", "truncated"),
    ("047f0000", "truncated"),
    ("047f000001060f", "truncated"),
    ("29" + "00" * 15, "truncated"),
    ("ff", "truncated"),  # code varint never ends
    ("0480", "truncated"),
    ("8000", "bad varint"),  # non-minimal code
    ("ffffffffffffffffff01", "bad varint"),  # code varint longer than 9 bytes
    ("00", "unknown protocol"),
    ("01", "unknown protocol"),
    ("bc030010c0439831b48218480050", "unknown protocol"),  # onion (not supported here)
    ("047f00000184010000", "unknown protocol"),  # sctp
    ("35", "truncated"),  # no length
    ("3581", "truncated"),  # length varint never ends
    ("358000", "bad varint"),  # non-minimal length
    ("3500", "missing value"),
    ("a50300", "missing value"),
    ("2a00", "missing value"),
    ("3505616263", "truncated"),
    ("35ffffffff0f61", "truncated"),  # huge length
    ("35012f", "bad dns"),
    ("3603612f62", "bad dns4"),
    ("3702c328", "bad dns6"),  # not UTF-8
    ("3802eda080", "bad dnsaddr"),  # UTF-8-encoded surrogate
    ("358002" + "61" * 256, "bad dns"),  # 256 bytes: one more than a DNS name may have
    ("2a012f", "bad ip6zone"),
    # go-multiaddr TestInvalidP2PAddrBytes: sha2-256 multihash claiming 33 bytes
    ("a503221221c05877cbae039d70a5e600ea02c6f9f2942439285c9e344e26f8d280c850fad6", "bad peer id"),
    ("a503021200", "bad peer id"),  # sha2-256 with an empty digest
    ("a50304000208" + "01", "bad peer id"),  # identity multihash of a bad key protobuf
    ("a50303110100", "bad peer id"),  # sha1 multihash
    ("a50323" + QM_HEX[6:] + "00", "bad peer id"),  # a trailing byte inside the value
    ("047f000001" * 205, "too long"),  # 1025 bytes
]


@pytest.mark.parametrize(("hex_", "hint"), INVALID_BYTES)
def test_invalid_bytes_raise_typed_error(hex_: str, hint: str) -> None:
    with pytest.raises(MultiaddrError) as info:
        Multiaddr.from_bytes(bytes.fromhex(hex_))
    assert info.value.hint == hint


def test_dns_name_of_255_bytes_is_accepted() -> None:
    name = "a" * 255
    ma = Multiaddr.from_string(f"/dns/{name}")
    assert ma.to_bytes() == bytes.fromhex("35ff01") + name.encode()
    assert Multiaddr.from_bytes(ma.to_bytes()) == ma


def test_unicode_dns_name_round_trips() -> None:
    # py-multiaddr test vector: an internationalised name, kept as UTF-8.
    text = (
        "/dns4/\u0645\u0648\u0642\u0639.\u0648\u0632\u0627\u0631\u0629"
        "-\u0627\u0644\u0627\u062a\u0635\u0627\u0644\u0627\u062a.\u0645\u0635\u0631"
    )
    ma = Multiaddr.from_string(text)
    assert str(ma) == text
    assert Multiaddr.from_bytes(ma.to_bytes()) == ma


def test_multiaddr_of_exactly_the_limit_is_accepted() -> None:
    data = bytes.fromhex("047f000001") * 204 + bytes.fromhex("a202a202")
    assert len(data) == MAX_MULTIADDR_BYTES
    ma = Multiaddr.from_bytes(data)
    assert ma.to_bytes() == data
    assert Multiaddr.from_string(str(ma)) == ma
    with pytest.raises(MultiaddrError, match="exceeds"):
        Multiaddr.from_bytes(data + bytes.fromhex("a202"))
    with pytest.raises(MultiaddrError, match="exceeds"):
        ma.encapsulate("/p2p-circuit")


# API -----------------------------------------------------------------------------------------


def test_components_expose_protocol_and_value() -> None:
    ma = Multiaddr.from_string(f"/ip4/127.0.0.1/udp/4001/quic-v1/p2p/{ED_A}")
    assert [(c.protocol.name, c.protocol.code, c.protocol.size, c.value) for c in ma] == [
        ("ip4", 4, 32, "127.0.0.1"),
        ("udp", 273, 16, "4001"),
        ("quic-v1", 461, 0, None),
        ("p2p", 421, VARIABLE_SIZE, ED_A),
    ]
    assert ma.components[0].value_bytes == bytes([127, 0, 0, 1])
    assert [str(c) for c in ma.components] == [
        "/ip4/127.0.0.1",
        "/udp/4001",
        "/quic-v1",
        f"/p2p/{ED_A}",
    ]
    assert len(ma) == 4
    assert [p.name for p in ma.protocols()] == ["ip4", "udp", "quic-v1", "p2p"]
    assert repr(ma) == f"Multiaddr('/ip4/127.0.0.1/udp/4001/quic-v1/p2p/{ED_A}')"


def test_multiaddr_is_immutable_and_hashable() -> None:
    a = Multiaddr.from_string("/ip4/127.0.0.1/tcp/4001")
    b = Multiaddr.from_bytes(bytes.fromhex("047f000001060fa1"))
    c = Multiaddr.from_string("/ip4/127.0.0.1/udp/4001")
    assert a == b
    assert a != c
    assert len({a, b, c}) == 2
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        a.components = ()  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        a.components[0].value = "1.2.3.4"  # type: ignore[misc]


def test_from_bytes_accepts_bytearray_and_memoryview() -> None:
    data = bytes.fromhex("047f000001060fa1")
    assert Multiaddr.from_bytes(bytearray(data)) == Multiaddr.from_bytes(memoryview(data))


def test_component_from_text_and_validation() -> None:
    assert Component.from_text("tcp", "4001") == Component(TCP, b"\x0f\xa1")
    assert Component.from_text("ipfs", QM).protocol == P2P
    assert Component.from_text("p2p-circuit").value is None
    with pytest.raises(MultiaddrError) as info:
        Component.from_text("p2p-circuit", "x")
    assert info.value.hint == "unexpected value"
    with pytest.raises(MultiaddrError) as info:
        Component.from_text("tcp")
    assert info.value.hint == "missing value"
    with pytest.raises(MultiaddrError) as info:
        Component(IP4, b"\x01\x02\x03")
    assert info.value.hint == "bad value length"
    with pytest.raises(MultiaddrError) as info:
        Component(P2P, b"\x12\x20")
    assert info.value.hint == "bad peer id"
    with pytest.raises(TypeError):
        Component(TCP, "4001")  # type: ignore[arg-type]
    with pytest.raises(MultiaddrError) as info:
        Component(Protocol("sctp", 132, 16), b"\x00\x01")
    assert info.value.hint == "unknown protocol"


def test_protocol_table_lookups() -> None:
    assert protocol_by_name("ipfs") is protocol_by_name("p2p")
    assert protocol_by_code(421).name == "p2p"
    assert protocol_by_code(461) == Protocol("quic-v1", 461, 0)
    assert {p.name for p in PROTOCOLS} >= {
        "ip4", "tcp", "udp", "ip6", "dns", "dns4", "dns6", "dnsaddr", "p2p", "quic-v1",
        "p2p-circuit",
    }  # fmt: skip
    assert len({p.code for p in PROTOCOLS}) == len(PROTOCOLS)
    with pytest.raises(MultiaddrError):
        protocol_by_name("sctp")
    with pytest.raises(MultiaddrError):
        protocol_by_code(132)


def test_value_for_returns_the_first_occurrence() -> None:
    ma = Multiaddr.from_string("/dns4/example.com/tcp/1234/dns4/foo.com/tcp/5678/ws")
    assert ma.value_for("tcp") == "1234"
    assert ma.value_for("dns4") == "example.com"
    assert ma.value_for("ws") is None
    assert ma.value_for("udp") is None
    assert Multiaddr.from_string(f"/ip4/1.2.3.4/p2p/{QM}").value_for("ipfs") == QM
    with pytest.raises(MultiaddrError):
        ma.value_for("nope")


def test_encapsulate() -> None:
    base = Multiaddr.from_string("/ip4/127.0.0.1/udp/1234")
    assert str(base.encapsulate("/udp/5678")) == "/ip4/127.0.0.1/udp/1234/udp/5678"
    assert base.encapsulate(Multiaddr.from_string("/quic-v1")) == Multiaddr.from_string(
        "/ip4/127.0.0.1/udp/1234/quic-v1"
    )
    assert base.decapsulate("ip4").encapsulate(base) == base
    with pytest.raises(MultiaddrError):
        base.encapsulate("udp/1")
    big = Multiaddr.from_string("/dns/" + "a" * 255)
    with pytest.raises(MultiaddrError) as info:
        big.encapsulate(big).encapsulate(big).encapsulate(big).encapsulate(big)
    assert info.value.hint == "too long"


R = ED_A
T = ED_B
RELAY = f"/ip4/1.2.3.4/tcp/1/p2p/{R}"
CIRCUIT = f"{RELAY}/p2p-circuit/p2p/{T}"
DNS_TWICE = "/dns4/example.com/tcp/1234/dns4/foo.com/tcp/5678"
QUIC_TWICE = "/ip4/1.2.3.4/udp/1/quic-v1/ip4/1.2.3.4/udp/1/quic-v1"
# (address, target, result): go-multiaddr TestDecapsulate, libp2p addressing/README.md,
# py-multiaddr decapsulate_code, and decapsulation by protocol name.
DECAPSULATE: list[tuple[str, str, str]] = [
    ("/ip4/1.2.3.4/tcp/1234", "/ip4/1.2.3.4", ""),
    ("/ip4/1.2.3.4", "/ip4/1.2.3.4/tcp/1234", "/ip4/1.2.3.4"),
    ("/ip4/1.2.3.5/tcp/1234", "/ip4/5.3.2.1", "/ip4/1.2.3.5/tcp/1234"),
    ("/ip4/1.2.3.5/udp/1234/quic-v1", "/udp/1234", "/ip4/1.2.3.5"),
    ("/ip4/1.2.3.6/udp/1234/quic-v1", "/udp/1234/quic-v1", "/ip4/1.2.3.6"),
    ("/ip4/1.2.3.7/tcp/1234", "/ws", "/ip4/1.2.3.7/tcp/1234"),
    ("/dnsaddr/wss.com/tcp/4001", "/ws", "/dnsaddr/wss.com/tcp/4001"),
    ("/dnsaddr/wss.com/tcp/4001/ws", "/wss", "/dnsaddr/wss.com/tcp/4001/ws"),
    ("/dnsaddr/wss.com/ws", "/wss", "/dnsaddr/wss.com/ws"),
    ("/dnsaddr/wss.com/ws", "/dnsaddr/wss.com", ""),
    ("/dnsaddr/wss.com/tcp/4001/wss", "/wss", "/dnsaddr/wss.com/tcp/4001"),
    ("/ip4/7.7.7.7/tcp/1234/ws", "/ws", "/ip4/7.7.7.7/tcp/1234"),
    ("/ip4/7.7.7.7/tcp/1234/ws", "/tcp/1234/ws", "/ip4/7.7.7.7"),
    ("/ip4/7.7.7.7/tcp/1234/ws", "/tcp/1234", "/ip4/7.7.7.7"),
    ("/ip4/7.7.7.7/tcp/1234/ws", "/tcp/1235", "/ip4/7.7.7.7/tcp/1234/ws"),
    (QUIC_TWICE, "/udp/1/quic-v1", "/ip4/1.2.3.4/udp/1/quic-v1/ip4/1.2.3.4"),
    (QUIC_TWICE, "/ip4/1.2.3.4", "/ip4/1.2.3.4/udp/1/quic-v1"),
    (DNS_TWICE, "dns4", "/dns4/example.com/tcp/1234"),
    (DNS_TWICE, "tcp", "/dns4/example.com/tcp/1234/dns4/foo.com"),
    (CIRCUIT, "p2p", f"{RELAY}/p2p-circuit"),
    (CIRCUIT, "ipfs", f"{RELAY}/p2p-circuit"),
    (CIRCUIT, "p2p-circuit", RELAY),
    (CIRCUIT, "/p2p-circuit", RELAY),
    (CIRCUIT, f"/p2p/{R}", "/ip4/1.2.3.4/tcp/1"),
    ("/ip4/1.2.3.4/tcp/1", "udp", "/ip4/1.2.3.4/tcp/1"),
    ("/ip4/1.2.3.4/tcp/1", "ip4", ""),
]


@pytest.mark.parametrize(("address", "target", "result"), DECAPSULATE)
def test_decapsulate(address: str, target: str, result: str) -> None:
    got = Multiaddr.from_string(address).decapsulate(target)
    assert str(got) == result
    if result:
        assert got == Multiaddr.from_string(result)
    else:
        assert got == Multiaddr(())
        assert len(got) == 0
        assert got.to_bytes() == b""


def test_decapsulate_by_protocol_record_and_multiaddr() -> None:
    ma = Multiaddr.from_string(f"/ip4/1.2.3.4/tcp/1/p2p/{ED_A}")
    assert ma.decapsulate(P2P) == Multiaddr.from_string("/ip4/1.2.3.4/tcp/1")
    assert ma.decapsulate(Multiaddr.from_string("/tcp/1")) == Multiaddr.from_string("/ip4/1.2.3.4")
    assert ma.decapsulate(Multiaddr(())) is ma
    with pytest.raises(MultiaddrError):
        ma.decapsulate("nope")


def test_empty_multiaddr_is_not_parsed_back() -> None:
    empty = Multiaddr.from_string("/ip4/1.2.3.4").decapsulate("ip4")
    assert str(empty) == ""
    assert not empty
    with pytest.raises(MultiaddrError):
        Multiaddr.from_string(str(empty))
    with pytest.raises(MultiaddrError):
        Multiaddr.from_bytes(empty.to_bytes())


def test_peer_id_is_the_trailing_p2p_value() -> None:
    relay = Multiaddr.from_string(f"{RELAY}/p2p-circuit")
    assert relay.peer_id is None
    target = relay.encapsulate(f"/p2p/{T}")
    assert target.peer_id == PeerID.from_string(T)
    assert Multiaddr.from_string(f"/p2p/{QM}/tcp/1234").peer_id is None
    assert Multiaddr.from_string("/ip4/1.2.3.4/tcp/1").peer_id is None
    assert Multiaddr.from_string(f"/ipfs/{QM}").peer_id == PeerID.from_string(QM)


def test_with_and_without_peer_id() -> None:
    peer = PeerID.from_string(ED_A)
    other = PeerID.from_string(ED_B)
    bare = Multiaddr.from_string("/ip4/127.0.0.1/tcp/4001")
    full = bare.with_peer_id(peer)
    assert str(full) == f"/ip4/127.0.0.1/tcp/4001/p2p/{ED_A}"
    assert full.with_peer_id(peer) is full
    assert full.without_peer_id() == bare
    assert bare.without_peer_id() is bare
    with pytest.raises(MultiaddrError) as info:
        full.with_peer_id(other)
    assert info.value.hint == "conflicting peer id"
    circuit = full.encapsulate("/p2p-circuit").with_peer_id(other)
    assert str(circuit) == f"/ip4/127.0.0.1/tcp/4001/p2p/{ED_A}/p2p-circuit/p2p/{ED_B}"
    assert circuit.without_peer_id().peer_id is None


INET, INET6, UNSPEC = socket.AF_INET, socket.AF_INET6, socket.AF_UNSPEC
TCP_TARGETS: list[tuple[str, TcpTarget | None]] = [
    ("/ip4/127.0.0.1/tcp/4001", TcpTarget("127.0.0.1", 4001, INET)),
    (f"/ip4/127.0.0.1/tcp/4001/p2p/{ED_A}", TcpTarget("127.0.0.1", 4001, INET)),
    ("/ip6/::1/tcp/0", TcpTarget("::1", 0, INET6)),
    ("/ip6zone/eth0/ip6/fe80::1/tcp/80", TcpTarget("fe80::1%eth0", 80, INET6)),
    ("/dns/example.com/tcp/443", TcpTarget("example.com", 443, UNSPEC)),
    ("/dns4/example.com/tcp/443", TcpTarget("example.com", 443, INET)),
    (f"/dns6/example.com/tcp/443/p2p/{QM}", TcpTarget("example.com", 443, INET6)),
    ("/dnsaddr/example.com/tcp/443", None),
    ("/ip4/127.0.0.1/udp/4001", None),
    ("/ip4/127.0.0.1/udp/4001/quic-v1", None),
    ("/ip4/127.0.0.1/tcp/4001/ws", None),
    ("/ip4/127.0.0.1/tcp/4001/tls", None),
    (CIRCUIT, None),
    ("/ip4/127.0.0.1", None),
    ("/tcp/4001", None),
    ("/ip6zone/eth0/tcp/80", None),
    ("/ip6zone/eth0/ip4/1.2.3.4/tcp/80", None),
    ("/ip4/1.2.3.4/ip4/1.2.3.4/tcp/80", None),
]


@pytest.mark.parametrize(("text", "expected"), TCP_TARGETS)
def test_tcp_host_port(text: str, expected: TcpTarget | None) -> None:
    assert tcp_host_port(Multiaddr.from_string(text)) == expected


def test_tcp_target_unpacks() -> None:
    target = tcp_host_port(Multiaddr.from_string("/ip4/127.0.0.1/tcp/4001"))
    assert target is not None
    host, port, family = target
    assert (host, port, family) == ("127.0.0.1", 4001, socket.AF_INET)


@pytest.mark.parametrize(
    ("host", "port", "text"),
    [
        ("127.0.0.1", 4001, "/ip4/127.0.0.1/tcp/4001"),
        ("::1", 0, "/ip6/::1/tcp/0"),
        ("fe80::1%eth0", 80, "/ip6zone/eth0/ip6/fe80::1/tcp/80"),
        ("example.com", 65535, "/dns/example.com/tcp/65535"),
    ],
)
def test_tcp_multiaddr(host: str, port: int, text: str) -> None:
    ma = tcp_multiaddr(host, port)
    assert str(ma) == text
    target = tcp_host_port(ma)
    assert target is not None
    assert (target.host, target.port) == (host, port)


@pytest.mark.parametrize(
    ("host", "port", "hint"),
    [
        ("127.0.0.1", 65536, "bad port"),
        ("127.0.0.1", -1, "bad port"),
        ("a/b", 1, "bad dns"),
        ("", 1, "missing value"),
        ("fe80::1%", 1, "bad ip6"),
        ("1::2::3", 1, "bad ip6"),
    ],
)
def test_tcp_multiaddr_rejects(host: str, port: int, hint: str) -> None:
    with pytest.raises(MultiaddrError) as info:
        tcp_multiaddr(host, port)
    assert info.value.hint == hint


# Properties ----------------------------------------------------------------------------------

_name_text = st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=40)
_peer_ids = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda seed: KeyPair.from_seed(seed).peer_id),
    st.binary(min_size=32, max_size=32).map(lambda d: PeerID.from_bytes(b"\x12\x20" + d)),
)
_port = st.integers(0, 65535).map(str)


def _not_ipv4_mapped(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is None


_ip6 = st.ip_addresses(v=6).filter(_not_ipv4_mapped).map(str)

# Canonical text of one component, for every supported protocol.
_component_text = st.one_of(
    st.ip_addresses(v=4).map(lambda a: f"/ip4/{a}"),
    _ip6.map(lambda a: f"/ip6/{a}"),
    _port.map(lambda p: f"/tcp/{p}"),
    _port.map(lambda p: f"/udp/{p}"),
    st.tuples(st.sampled_from(["dns", "dns4", "dns6", "dnsaddr", "ip6zone"]), _name_text).map(
        lambda nv: f"/{nv[0]}/{nv[1]}"
    ),
    _peer_ids.map(lambda p: f"/p2p/{p}"),
    st.sampled_from(["/quic-v1", "/quic", "/p2p-circuit", "/tls", "/ws", "/wss"]),
)
_multiaddr_text = st.lists(_component_text, min_size=1, max_size=6).map("".join)


@settings(max_examples=300, deadline=None)
@given(_multiaddr_text)
def test_valid_multiaddrs_round_trip_text_and_binary(text: str) -> None:
    ma = Multiaddr.from_string(text)
    assert str(ma) == text
    data = ma.to_bytes()
    again = Multiaddr.from_bytes(data)
    assert again == ma
    assert str(again) == text
    assert again.to_bytes() == data
    assert hash(again) == hash(ma)
    assert Multiaddr(ma.components) == ma


@settings(max_examples=100, deadline=None)
@given(_peer_ids)
def test_cid_and_base58_peer_ids_are_the_same_component(peer: PeerID) -> None:
    a = Multiaddr.from_string(f"/p2p/{peer.to_cid()}")
    b = Multiaddr.from_string(f"/ipfs/{peer}")
    assert a == b
    assert str(a) == f"/p2p/{peer}"
    assert a.peer_id == peer


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(v=6))
def test_ip6_text_is_canonical(addr: ipaddress.IPv6Address) -> None:
    ma = Multiaddr.from_string(f"/ip6/{addr.exploded}")
    value = ma.value_for("ip6")
    assert value is not None
    assert ipaddress.IPv6Address(value) == addr
    assert str(Multiaddr.from_string(str(ma))) == str(ma)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_raise_only_multiaddr_error(data: bytes) -> None:
    try:
        ma = Multiaddr.from_bytes(data)
    except MultiaddrError:
        return
    assert ma.to_bytes() == data
    assert Multiaddr.from_string(str(ma)) == ma


# Bytes that start like a multiaddr: valid components, codes and prefixes mixed with junk.
_byte_pieces = st.one_of(
    st.sampled_from([bytes.fromhex(h) for _, h in VECTORS[:12]]),
    st.sampled_from([encode_uvarint(p.code) for p in PROTOCOLS]),
    st.binary(max_size=6),
    st.sampled_from([b"\x35", b"\xa5\x03", b"\x2a", b"\xa5\x03\x26\x00\x24"]),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_byte_pieces, max_size=6).map(b"".join))
def test_near_valid_bytes_raise_only_multiaddr_error(data: bytes) -> None:
    try:
        ma = Multiaddr.from_bytes(data)
    except MultiaddrError:
        return
    assert ma.to_bytes() == data


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_raises_only_multiaddr_error(text: str) -> None:
    try:
        ma = Multiaddr.from_string(text)
    except MultiaddrError:
        return
    assert Multiaddr.from_string(str(ma)) == ma


# Text that starts like a multiaddr: protocol names, values and junk joined by '/'.
_names = st.sampled_from([*(p.name for p in PROTOCOLS), "ipfs"])
_values = st.sampled_from(
    ["127.0.0.1", "::1", "4001", "65536", "", QM, ED_A, "example.com", "%", "fe80::1%x"]
)
_text_pieces = st.one_of(
    _names,
    _values,
    st.tuples(_names, _values).map("/".join),
    st.text(max_size=8),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_text_pieces, max_size=8).map(lambda parts: "/" + "/".join(parts)))
def test_near_valid_text_raises_only_multiaddr_error(text: str) -> None:
    try:
        ma = Multiaddr.from_string(text)
    except MultiaddrError:
        return
    assert Multiaddr.from_bytes(ma.to_bytes()) == ma
