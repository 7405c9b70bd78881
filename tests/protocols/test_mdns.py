"""mDNS discovery (specs/mdns.md): the sans-IO core with byte vectors, and two services on lo.

The core is checked against fixed bytes (our query and response), against responses laid out
the way go-libp2p and rust-libp2p write them (built byte by byte from their source, see
specs/mdns.md "Vectors"), and against messages that dnspython builds. The service tests run
two or three nodes on the loopback interface, on a private UDP port per test so that no other
mDNS traffic on this machine is involved.
"""

from __future__ import annotations

import random
import socket
from typing import Final

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.discovery.mdns import DiscoveredPeer, MdnsConfig, MdnsError, open_mdns
from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import HostConfig, open_host
from p2pchat.protocols.mdns import (
    DEFAULT_TTL,
    MAX_PACKET_SIZE,
    MAX_RESPONSE_SIZE,
    MDNS_IPV4_GROUP,
    PEER_NAME_ALPHABET,
    SERVICE_NAME,
    MdnsDecodeError,
    MdnsQuery,
    MdnsResponse,
    PeerAnnouncement,
    Reply,
    build_query,
    build_response,
    build_services_response,
    generate_peer_name,
    host_name_for,
    instance_name_for,
    is_dialable,
    next_query_offset,
    parse_packet,
    plan_reply,
    query_offset,
)

PEER: Final = KeyPair.from_seed(bytes(32)).peer_id
OTHER: Final = KeyPair.from_seed(bytes(range(32))).peer_id
NAME: Final = "mdnsvectorpeername0123456789abcdef"


def ma(text: str) -> Multiaddr:
    return Multiaddr.from_string(text)


# -- vectors (specs/mdns.md "Vectors") ----------------------------------------------------------

QUERY_HEX: Final = (
    "00000000" "0001000000000000"  # ID 0, flags 0; 1 question, 0 answer/authority/additional
    "045f703270045f756470056c6f63616c00" "000c" "0001"  # _p2p._udp.local. PTR IN
)  # fmt: skip

PRIVATE_QUERY_HEX: Final = (
    "0000000000010000000000000d5f7032702d3031323361626364045f756470056c6f63616c00000c0001"
)

RESPONSE_HEX: Final = (
    # header: ID 0, QR|AA, 0 questions, 1 answer, 0 authority, 3 additional
    "000084000000000100000003"
    # answer: _p2p._udp.local. PTR IN, TTL 120 -> mdnsvector...ef._p2p._udp.local.
    "045f703270045f756470056c6f63616c00000c00010000007800"
    "25226d646e73766563746f72706565726e616d6530313233343536373839616263646566c00c"
    # additional: TXT (IN + cache-flush) "dnsaddr=/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWDpJ7..."
    "c0270010800100000078005958646e73616464723d2f6970342f3139322e302e322e312f7463702f34"
    "3030312f7032702f313244334b6f6f5744704a3741733742574177524d6675315655325743714e6a7671"
    "3338374a45594b44426a346b78366e58544e"
    # SRV 0 0 4001 mdnsvector...ef.local.
    "c02700218001000000780030000000000fa1226d646e73766563746f72706565726e616d6530313233"
    "343536373839616263646566056c6f63616c00"
    # A 192.0.2.1 for mdnsvector...ef.local.
    "226d646e73766563746f72706565726e616d6530313233343536373839616263646566c0160001800100"
    "000078" "0004c0000201"
)  # fmt: skip

SERVICES_RESPONSE_HEX: Final = (
    "000084000000000100000000095f7365727669636573075f646e732d7364045f756470056c6f63616c00"
    "000c0001000000780007045f703270c01e"
)

# go-libp2p's layout (libp2p/zeroconf's browsing answer packed by miekg/dns): PTR answer; SRV,
# TXT (one record, four strings), A, AAAA in the additional section; class IN; TTL 3200.
GO_PEER: Final = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"
GO_NAME: Final = "k3v9q0x7m2c8w1r5t6y4u8i0o2p7a3s5d9f1g6h2"
GO_RESPONSE_HEX: Final = (
    "000084000000000100000004045f703270045f756470056c6f63616c00000c000100000c80002b286b3376"
    "39713078376d3263387731723574367934753869306f327037613373356439663167366832c00cc0270021"
    "000100000c800036000000000fa1286b337639713078376d3263387731723574367934753869306f327037"
    "613373356439663167366832056c6f63616c00c0270010000100000c80017159646e73616464723d2f6970"
    "342f3139322e302e322e31302f7463702f343030312f7032702f313244334b6f6f57427467336161524d6a"
    "78776564683833614769556b7753784477555a6b7a754a63666171556d6f375233707158646e7361646472"
    "3d2f6970342f3132372e302e302e312f7463702f343030312f7032702f313244334b6f6f57427467336161"
    "524d6a78776564683833614769556b7753784477555a6b7a754a63666171556d6f375233707161646e7361"
    "6464723d2f6970342f3139322e302e322e31302f7564702f343030312f717569632d76312f7032702f3132"
    "44334b6f6f57427467336161524d6a78776564683833614769556b7753784477555a6b7a754a6366617155"
    "6d6f37523370715b646e73616464723d2f6970362f323030313a6462383a3a31302f7463702f343030312f"
    "7032702f313244334b6f6f57427467336161524d6a78776564683833614769556b7753784477555a6b7a75"
    "4a63666171556d6f3752337071c0640001000100000c800004c000020ac064001c000100000c8000102001"
    "0db8000000000000000000000010"
)

# rust-libp2p's layout (protocols/mdns dns.rs): ID 0xf8f8, PTR to a bare one-label peer name,
# one TXT record (IN + cache-flush) per address in the additional section, TTL 360.
RUST_PEER: Final = str(PEER)
RUST_NAME: Final = "Zx81QmPb3Kc7Lw0NvR5tYh2Gj9Fd4Sa6Ue"
RUST_RESPONSE_HEX: Final = (
    "f8f884000000000100000002045f703270045f756470056c6f63616c00000c0001000001680024225a7838"
    "31516d5062334b63374c77304e76523574596832476a39466434536136556500225a783831516d5062334b"
    "63374c77304e76523574596832476a394664345361365565000010800100000168005a59646e7361646472"
    "3d2f6970342f3139322e302e322e32302f7463702f343030312f7032702f313244334b6f6f5744704a3741"
    "733742574177524d6675315655325743714e6a76713338374a45594b44426a346b78366e58544e225a7838"
    "31516d5062334b63374c77304e76523574596832476a394664345361365565000010800100000168006261"
    "646e73616464723d2f6970342f3139322e302e322e32302f7564702f343030312f717569632d76312f7032"
    "702f313244334b6f6f5744704a3741733742574177524d6675315655325743714e6a76713338374a45594b"
    "44426a346b78366e58544e"
)


# Captured in a test namespace from py-libp2p 0.8.1 (python-zeroconf 0.150.5): its response to
# our query (PTR answer; SRV, NSEC, A 127.0.0.1, TXT in the additional section; the NSEC's
# next-name is compressed, which plain dnspython refuses), and one of its queries, which lists
# its own instance as a known answer.
ZEROCONF_PEER: Final = "12D3KooWH3vGXHXDXvPG2JNR2EPu7q54VBsfLjRM9tT7haSL5FXp"
ZEROCONF_NAME: Final = "9w6kczugj1g5bqje5klxl7iftuho17jvb1zf1cppz2gzvdgfn4jamm8y0aevq0z"
ZEROCONF_RESPONSE_HEX: Final = (
    "000084000000000100000004045f703270045f756470056c6f63616c00000c00010000119400423f397736"
    "6b637a75676a31673562716a65356b6c786c3769667475686f31376a7662317a66316370707a32677a7664"
    "67666e346a616d6d38793061657671307ac00cc02700218001000000780048000000000fa13f3977366b63"
    "7a75676a31673562716a65356b6c786c3769667475686f31376a7662317a66316370707a32677a76646766"
    "6e346a616d6d38793061657671307ac016c07b002f8001000000780005c07b000140c07b00018001000000"
    "7800047f000001c0270010800100001194005c5b646e73616464723d2f6970342f31302e3139392e31332e"
    "312f7463702f33353438352f7032702f313244334b6f6f57483376475848584458765047324a4e52324550"
    "7537713534564273664c6a524d397454376861534c35465870"
)
ZEROCONF_QUERY_HEX: Final = (
    "000000000001000100000000045f703270045f756470056c6f63616c00000c0001c00c000c000100001190"
    "00423f3977366b637a75676a31673562716a65356b6c786c3769667475686f31376a7662317a6631637070"
    "7a32677a766467666e346a616d6d38793061657671307ac00c"
)


def test_query_bytes() -> None:
    assert build_query().hex() == QUERY_HEX
    assert len(build_query()) == 33
    assert build_query("_p2p-0123abcd._udp.local.").hex() == PRIVATE_QUERY_HEX


def test_our_query_parses_as_find_all_peers() -> None:
    assert parse_packet(bytes.fromhex(QUERY_HEX)) == MdnsQuery(wants_peers=True)
    # A private network's query is not ours, and ours is not theirs.
    assert parse_packet(bytes.fromhex(PRIVATE_QUERY_HEX)) is None
    private = "_p2p-0123abcd._udp.local."
    assert parse_packet(bytes.fromhex(PRIVATE_QUERY_HEX), private) == MdnsQuery(wants_peers=True)


def test_response_bytes() -> None:
    wire = build_response(NAME, PEER, [ma("/ip4/192.0.2.1/tcp/4001")])
    assert wire.hex() == RESPONSE_HEX


def test_response_as_dnspython_reads_it() -> None:
    msg = dns.message.from_wire(bytes.fromhex(RESPONSE_HEX))
    assert msg.flags & dns.flags.QR
    assert msg.flags & dns.flags.AA
    assert msg.id == 0
    assert not msg.question
    (ptr,) = msg.answer
    assert ptr.name.to_text() == SERVICE_NAME
    assert ptr.rdtype == dns.rdatatype.PTR
    assert ptr.rdclass == dns.rdataclass.IN  # shared record: no cache-flush bit
    assert ptr.ttl == DEFAULT_TTL
    assert ptr[0].target.to_text() == instance_name_for(NAME)
    by_type = {rrset.rdtype: rrset for rrset in msg.additional}
    assert set(by_type) == {dns.rdatatype.TXT, dns.rdatatype.SRV, dns.rdatatype.A}
    assert all(rrset.rdclass == 0x8001 for rrset in msg.additional)  # IN + cache-flush
    txt = by_type[dns.rdatatype.TXT]
    assert txt.name.to_text() == f"{NAME}._p2p._udp.local."
    assert txt[0].strings == (f"dnsaddr=/ip4/192.0.2.1/tcp/4001/p2p/{PEER}".encode(),)
    # Not of class IN, so dnspython keeps SRV and A rdata as bytes.
    srv = by_type[dns.rdatatype.SRV][0].data
    assert srv[:6] == bytes.fromhex("000000000fa1")  # priority 0, weight 0, port 4001
    assert by_type[dns.rdatatype.A][0].data == bytes([192, 0, 2, 1])
    assert by_type[dns.rdatatype.A].name.to_text() == host_name_for(NAME)


def test_response_round_trip() -> None:
    addrs = [
        ma("/ip4/192.0.2.1/tcp/4001"),
        ma("/ip6/2001:db8::1/tcp/4002"),
        ma("/dns4/x.local/tcp/1"),
    ]
    parsed = parse_packet(build_response(NAME, PEER, addrs, ttl=77))
    assert parsed == MdnsResponse((PeerAnnouncement(NAME, PEER, tuple(addrs), 77),))


def test_addresses_with_our_peer_id_are_accepted() -> None:
    with_id = [ma(f"/ip4/192.0.2.1/tcp/4001/p2p/{PEER}")]
    assert build_response(NAME, PEER, with_id) == build_response(
        NAME, PEER, [ma("/ip4/192.0.2.1/tcp/4001")]
    )


def test_services_response_bytes() -> None:
    wire = build_services_response()
    assert wire.hex() == SERVICES_RESPONSE_HEX
    # It is a response with no libp2p peer in it.
    assert parse_packet(wire) == MdnsResponse(())


GOODBYE_HEX: Final = (
    "000084000000000100000001045f703270045f756470056c6f63616c00000c0001000000000025226d646e"
    "73766563746f72706565726e616d6530313233343536373839616263646566c00cc02700108001000000"
    "00000100"
)


def test_goodbye_has_ttl_zero_and_an_empty_txt() -> None:
    wire = build_response(NAME, PEER, [], ttl=0)
    assert wire.hex() == GOODBYE_HEX
    msg = dns.message.from_wire(wire)
    assert msg.answer[0].ttl == 0
    (txt,) = msg.additional  # no SRV/A without an address
    assert txt[0].strings == (b"",)
    # Without any dnsaddr string, nothing names a peer.
    assert parse_packet(wire) == MdnsResponse(())


def test_go_libp2p_layout() -> None:
    parsed = parse_packet(bytes.fromhex(GO_RESPONSE_HEX))
    assert isinstance(parsed, MdnsResponse)
    (peer,) = parsed.peers
    assert peer.peer_name == GO_NAME
    assert str(peer.peer_id) == GO_PEER
    assert peer.ttl == 3200
    assert [str(a) for a in peer.addrs] == [
        "/ip4/192.0.2.10/tcp/4001",
        "/ip4/127.0.0.1/tcp/4001",
        "/ip4/192.0.2.10/udp/4001/quic-v1",
        "/ip6/2001:db8::10/tcp/4001",
    ]
    # What a node on a LAN interface keeps: TCP, not loopback.
    kept = [str(a) for a in peer.addrs if is_dialable(a, allow_loopback=False)]
    assert kept == ["/ip4/192.0.2.10/tcp/4001", "/ip6/2001:db8::10/tcp/4001"]


def test_rust_libp2p_layout() -> None:
    parsed = parse_packet(bytes.fromhex(RUST_RESPONSE_HEX))
    assert isinstance(parsed, MdnsResponse)
    (peer,) = parsed.peers
    assert peer.peer_name == RUST_NAME.lower()
    assert str(peer.peer_id) == RUST_PEER
    assert peer.ttl == 360
    assert [str(a) for a in peer.addrs] == [
        "/ip4/192.0.2.20/tcp/4001",
        "/ip4/192.0.2.20/udp/4001/quic-v1",
    ]


def test_python_zeroconf_capture() -> None:
    wire = bytes.fromhex(ZEROCONF_RESPONSE_HEX)
    with pytest.raises(dns.exception.DNSException):  # why unread records are made opaque
        dns.message.from_wire(wire)
    parsed = parse_packet(wire)
    assert isinstance(parsed, MdnsResponse)
    (peer,) = parsed.peers
    assert (peer.peer_name, str(peer.peer_id), peer.ttl) == (ZEROCONF_NAME, ZEROCONF_PEER, 4500)
    assert [str(a) for a in peer.addrs] == ["/ip4/10.199.13.1/tcp/35485"]
    instance = f"{ZEROCONF_NAME}._p2p._udp.local."
    query_ = parse_packet(bytes.fromhex(ZEROCONF_QUERY_HEX))
    assert query_ == MdnsQuery(wants_peers=True, known_instances=((instance, 4496),))
    # Its known answer is its own instance, not ours: we answer.
    assert isinstance(query_, MdnsQuery)
    assert plan_reply(query_, NAME) == Reply(peers=True)
    assert plan_reply(query_, ZEROCONF_NAME, ttl=4500) == Reply()


def test_records_we_do_not_read_cannot_spoil_a_packet() -> None:
    """An empty TXT, a broken A and an NSEC with a compressed name (all refused by dnspython)
    do not hide the good records around them."""
    good = bytes.fromhex(RESPONSE_HEX)
    header, body = good[:12], good[12:]
    counts = bytearray(header)
    counts[11] += 3  # three more additional records
    extra = (
        bytes.fromhex("c027" "0010" "8001" "00000078" "0000")  # TXT with no string at all
        + bytes.fromhex("c027" "0001" "0001" "00000078" "0003" "0a0000")  # A of 3 bytes
        + bytes.fromhex("c027" "002f" "8001" "00000078" "0005" "c0270001" "40")  # NSEC
    )  # fmt: skip
    wire = bytes(counts) + body + extra
    with pytest.raises(dns.exception.DNSException):
        dns.message.from_wire(wire)
    assert parse_packet(wire) == parse_packet(good)


# -- responses built by dnspython ---------------------------------------------------------------


def response(*sections: tuple[str, list[tuple[str, int, str, str]]], flags: int = 0x8400) -> bytes:
    """A DNS message from (section, [(name, ttl, class, "TYPE rdata")]) lists."""
    msg = dns.message.Message(id=0)
    msg.flags = flags
    for section, records in sections:
        target = getattr(msg, section)
        for name, ttl, rdclass, text in records:
            rdtype, _, rdata = text.partition(" ")
            target.append(dns.rrset.from_text(name, ttl, rdclass, rdtype, rdata))
    return msg.to_wire()


INST: Final = f"{NAME}._p2p._udp.local."
PTR_ANSWER: Final = ("answer", [(SERVICE_NAME, 120, "IN", f"PTR {INST}")])


def txt(*strings: str, ttl: int = 120, name: str = INST) -> tuple[str, int, str, str]:
    return (name, ttl, "IN", "TXT " + " ".join(f'"{s}"' for s in strings))


def dnsaddr(addr: str, peer: PeerID = PEER) -> str:
    return f"dnsaddr={addr}/p2p/{peer}"


RESPONSE_CASES: Final = [
    pytest.param(
        [PTR_ANSWER, ("additional", [txt(dnsaddr("/ip4/10.0.0.1/tcp/1"), "other=attribute")])],
        [("/ip4/10.0.0.1/tcp/1",)],
        id="other-attributes-skipped",
    ),
    pytest.param(
        [
            PTR_ANSWER,
            (
                "additional",
                [txt(dnsaddr("/ip4/10.0.0.1/tcp/1")), txt(dnsaddr("/ip4/10.0.0.2/tcp/2"))],
            ),
        ],
        [("/ip4/10.0.0.1/tcp/1", "/ip4/10.0.0.2/tcp/2")],
        id="two-txt-records",
    ),
    pytest.param(
        [PTR_ANSWER, ("answer", [txt(dnsaddr("/ip4/10.0.0.1/tcp/1"))])],
        [("/ip4/10.0.0.1/tcp/1",)],
        id="txt-in-answer-section",
    ),
    pytest.param(
        [
            PTR_ANSWER,
            (
                "additional",
                [
                    txt(
                        "dnsaddr=/ip4/10.0.0.1/tcp/1",  # no /p2p
                        "dnsaddr=/ip4/999.0.0.1/tcp/1/p2p/" + str(PEER),  # bad multiaddr
                        "dnsaddr=not a multiaddr",
                        "DNSADDR=/ip4/10.0.0.3/tcp/3/p2p/" + str(PEER),  # keys ignore case
                        dnsaddr("/ip4/10.0.0.4/tcp/4", OTHER),  # another peer: dropped
                        dnsaddr("/ip4/10.0.0.3/tcp/3"),  # duplicate
                    )
                ],
            ),
        ],
        [("/ip4/10.0.0.3/tcp/3",)],
        id="bad-strings-skipped",
    ),
    pytest.param(
        [PTR_ANSWER, ("additional", [txt(dnsaddr("/ip4/10.0.0.1/tcp/1"), name="x.local.")])],
        [],
        id="txt-of-another-name",
    ),
    pytest.param(
        [("additional", [txt(dnsaddr("/ip4/10.0.0.1/tcp/1"))])],
        [],
        id="no-ptr",
    ),
    pytest.param(
        [
            ("answer", [("_other._tcp.local.", 120, "IN", f"PTR {INST}")]),
            ("additional", [txt(dnsaddr("/ip4/10.0.0.1/tcp/1"))]),
        ],
        [],
        id="ptr-of-another-service",
    ),
    pytest.param(
        [PTR_ANSWER, ("additional", [txt("dnsaddr=/ip4/10.0.0.1/tcp/1")])],
        [],
        id="no-peer-id-anywhere",
    ),
]


@pytest.mark.parametrize(("sections", "expected"), RESPONSE_CASES)
def test_responses_built_by_dnspython(
    sections: list[tuple[str, list[tuple[str, int, str, str]]]],
    expected: list[tuple[str, ...]],
) -> None:
    parsed = parse_packet(response(*sections))
    assert isinstance(parsed, MdnsResponse)
    assert [tuple(str(a) for a in p.addrs) for p in parsed.peers] == expected
    assert all(p.peer_id == PEER and p.peer_name == NAME for p in parsed.peers)


def test_ttl_is_the_smaller_of_ptr_and_txt() -> None:
    low_txt = response(PTR_ANSWER, ("additional", [txt(dnsaddr("/ip4/10.0.0.1/tcp/1"), ttl=30)]))
    goodbye = response(
        ("answer", [(SERVICE_NAME, 0, "IN", f"PTR {INST}")]),
        ("additional", [txt(dnsaddr("/ip4/10.0.0.1/tcp/1"))]),
    )
    for wire, ttl in ((low_txt, 30), (goodbye, 0)):
        parsed = parse_packet(wire)
        assert isinstance(parsed, MdnsResponse)
        assert [p.ttl for p in parsed.peers] == [ttl]


def test_two_peers_in_one_response() -> None:
    other_inst = f"{'b' * 40}._p2p._udp.local."
    wire = response(
        (
            "answer",
            [
                (SERVICE_NAME, 120, "IN", f"PTR {INST}"),
                (SERVICE_NAME, 120, "IN", f"PTR {other_inst}"),
            ],
        ),
        (
            "additional",
            [
                txt(dnsaddr("/ip4/10.0.0.1/tcp/1")),
                txt(dnsaddr("/ip4/10.0.0.2/tcp/2", OTHER), name=other_inst),
            ],
        ),
    )
    parsed = parse_packet(wire)
    assert isinstance(parsed, MdnsResponse)
    assert {p.peer_id for p in parsed.peers} == {PEER, OTHER}


def test_ignored_messages() -> None:
    update = response(PTR_ANSWER, flags=0x8400 | dns.opcode.to_flags(dns.opcode.UPDATE))
    refused = response(PTR_ANSWER, flags=0x8400 | dns.rcode.REFUSED)
    assert parse_packet(update) is None  # RFC 6762 section 18.3
    assert parse_packet(refused) is None  # RFC 6762 section 18.11


# -- queries ---------------------------------------------------------------------------------------


def query(*questions: tuple[str, int, int], known: list[tuple[str, int]] | None = None) -> bytes:
    msg = dns.message.Message(id=0)
    msg.flags = 0
    for name, rdclass, rdtype in questions:
        msg.find_rrset(
            msg.question,
            dns.name.from_text(name),
            dns.rdataclass.RdataClass.make(rdclass),
            dns.rdatatype.RdataType.make(rdtype),
            create=True,
        )
    for target, ttl in known or []:
        msg.answer.append(dns.rrset.from_text(SERVICE_NAME, ttl, "IN", "PTR", target))
    return msg.to_wire()


IN, QU, PTR, TXT, A, ANY = 1, 0x8001, 12, 16, 1, 255
META: Final = "_services._dns-sd._udp.local."

QUERY_CASES: Final = [
    pytest.param(query((SERVICE_NAME, IN, PTR)), MdnsQuery(wants_peers=True), id="ptr"),
    pytest.param(query((SERVICE_NAME, QU, PTR)), MdnsQuery(wants_peers=True), id="ptr-qu-bit"),
    pytest.param(query((SERVICE_NAME, IN, ANY)), MdnsQuery(wants_peers=True), id="any-type"),
    pytest.param(query((SERVICE_NAME, 255, PTR)), MdnsQuery(wants_peers=True), id="any-class"),
    pytest.param(query((META, IN, PTR)), MdnsQuery(wants_services=True), id="meta"),
    pytest.param(
        query((INST.upper(), IN, TXT)), MdnsQuery(names=frozenset({INST})), id="txt-of-instance"
    ),
    pytest.param(
        query((SERVICE_NAME, IN, PTR), known=[(INST, 100)]),
        MdnsQuery(wants_peers=True, known_instances=((INST, 100),)),
        id="known-answer",
    ),
    pytest.param(query(("_http._tcp.local.", IN, PTR)), None, id="other-service"),
    pytest.param(query((SERVICE_NAME, 3, PTR)), None, id="chaos-class"),
    pytest.param(query((SERVICE_NAME, IN, 5)), None, id="cname-type"),
    pytest.param(query(), None, id="no-question"),
]


@pytest.mark.parametrize(("wire", "expected"), QUERY_CASES)
def test_queries(wire: bytes, expected: MdnsQuery | None) -> None:
    assert parse_packet(wire) == expected


PLAN_CASES: Final = [
    pytest.param(MdnsQuery(wants_peers=True), Reply(peers=True), id="find-all"),
    pytest.param(
        MdnsQuery(wants_peers=True, known_instances=((INST, 60),)), Reply(), id="known-half-ttl"
    ),
    pytest.param(
        MdnsQuery(wants_peers=True, known_instances=((INST, 59),)),
        Reply(peers=True),
        id="known-less-than-half",
    ),
    pytest.param(
        MdnsQuery(wants_peers=True, known_instances=(("x._p2p._udp.local.", 120),)),
        Reply(peers=True),
        id="other-known",
    ),
    pytest.param(MdnsQuery(names=frozenset({INST})), Reply(peers=True), id="instance-lookup"),
    pytest.param(
        MdnsQuery(names=frozenset({host_name_for(NAME)})), Reply(peers=True), id="host-lookup"
    ),
    pytest.param(MdnsQuery(names=frozenset({"x.local."})), Reply(), id="other-lookup"),
    pytest.param(MdnsQuery(wants_services=True), Reply(services=True), id="meta"),
]


@pytest.mark.parametrize(("parsed", "expected"), PLAN_CASES)
def test_plan_reply(parsed: MdnsQuery, expected: Reply) -> None:
    assert plan_reply(parsed, NAME, ttl=120) == expected


# -- limits ----------------------------------------------------------------------------------------


def test_response_keeps_to_its_size_limit() -> None:
    addrs = [ma(f"/ip4/10.0.{i // 250}.{i % 250 + 1}/tcp/{4000 + i}") for i in range(40)]
    wire = build_response(NAME, PEER, addrs)
    assert len(wire) <= MAX_RESPONSE_SIZE
    parsed = parse_packet(wire)
    assert isinstance(parsed, MdnsResponse)
    kept = parsed.peers[0].addrs
    assert 5 < len(kept) < 40
    assert list(kept) == addrs[: len(kept)]  # the first ones, in order
    roomy = parse_packet(build_response(NAME, PEER, addrs, max_size=MAX_PACKET_SIZE))
    assert isinstance(roomy, MdnsResponse)
    assert len(roomy.peers[0].addrs) > len(kept)


def test_address_too_long_for_a_txt_string_is_left_out() -> None:
    long = ma(f"/dns4/{'a' * 60}.{'b' * 60}.{'c' * 60}.local/tcp/1")
    short = ma("/ip4/10.0.0.1/tcp/1")
    parsed = parse_packet(build_response(NAME, PEER, [long, short]))
    assert isinstance(parsed, MdnsResponse)
    assert parsed.peers[0].addrs == (short,)


def test_oversized_packet_is_refused() -> None:
    with pytest.raises(MdnsDecodeError) as info:
        parse_packet(bytes(MAX_PACKET_SIZE + 1))
    assert info.value.hint == "too large"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"peer_name": "short"}, "peer name"),
        ({"peer_name": "A" * 40}, "peer name"),
        ({"ttl": -1}, "ttl"),
        ({"service": "example.com."}, "service name"),
        ({"max_size": 40}, "too small"),
    ],
)
def test_build_response_rejects(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"peer_name": NAME, "ttl": 120, "service": SERVICE_NAME}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        build_response(
            str(args["peer_name"]),
            PEER,
            [],
            ttl=int(str(args["ttl"])),
            service=str(args["service"]),
            max_size=int(str(args.get("max_size", MAX_RESPONSE_SIZE))),
        )


# -- peer names, dialable addresses, schedule -----------------------------------------------------


def test_peer_names() -> None:
    names = [generate_peer_name(random.Random(seed)) for seed in range(300)]
    assert {len(n) for n in names} <= set(range(32, 64))
    assert min(len(n) for n in names) == 32
    assert max(len(n) for n in names) == 63
    assert all(set(n) <= set(PEER_NAME_ALPHABET) for n in names)
    assert generate_peer_name(random.Random(7)) == generate_peer_name(random.Random(7))
    assert generate_peer_name() != generate_peer_name()
    # Every generated name is a valid peer name for a response.
    assert parse_packet(build_response(names[0], PEER, [ma("/ip4/10.0.0.1/tcp/1")])) is not None


@pytest.mark.parametrize(
    ("addr", "loopback", "expected"),
    [
        ("/ip4/10.0.0.1/tcp/1", False, True),
        ("/ip6/fd00::1/tcp/1", False, True),
        ("/dns4/peer.local/tcp/1", False, True),
        ("/ip4/127.0.0.1/tcp/1", False, False),
        ("/ip4/127.0.0.1/tcp/1", True, True),
        ("/ip6/::1/tcp/1", True, True),
        ("/ip4/0.0.0.0/tcp/1", True, False),
        ("/ip6/::/tcp/1", True, False),
        ("/ip4/224.0.0.251/tcp/1", True, False),
        ("/ip4/10.0.0.1/tcp/0", True, False),
        ("/ip4/10.0.0.1/udp/1/quic-v1", True, False),
        ("/ip4/10.0.0.1/tcp/1/ws", True, False),
        ("/dnsaddr/bootstrap.libp2p.io", True, False),
    ],
)
def test_is_dialable(addr: str, loopback: bool, expected: bool) -> None:
    assert is_dialable(ma(addr), allow_loopback=loopback) is expected


def test_query_schedule() -> None:
    offsets = [query_offset(i, first_delay=0.05) for i in range(10)]
    assert offsets == pytest.approx(
        [0.05, 1.05, 3.05, 7.05, 15.05, 31.05, 63.05, 123.05, 183.05, 243.05]
    )
    short = [query_offset(i, first_delay=0.0, interval=10.0) for i in range(7)]
    assert short == [0.0, 1.0, 3.0, 7.0, 15.0, 25.0, 35.0]
    # An interval that is not a power of two times the first gap caps the doubling.
    assert query_offset(3, first_delay=0.0, interval=3.0) == 1.0 + 2.0 + 3.0
    for bad in (
        {"first_delay": -1.0},
        {"first_delay": 0.0, "interval": 0.5},
        {"first_delay": float("nan")},
    ):
        with pytest.raises(ValueError, match="first_delay"):
            query_offset(0, **bad)
    with pytest.raises(ValueError, match="index"):
        query_offset(-1, first_delay=0.0)


@settings(max_examples=300, deadline=None)
@given(
    elapsed=st.floats(min_value=-5.0, max_value=1e5, allow_nan=False),
    first_delay=st.floats(min_value=0.0, max_value=0.5),
    interval=st.sampled_from([1.0, 3.0, 10.0, 60.0, 300.0]),
)
def test_next_query_offset_is_the_next_scheduled_query(
    elapsed: float, first_delay: float, interval: float
) -> None:
    nxt = next_query_offset(elapsed, first_delay=first_delay, interval=interval)
    assert nxt > elapsed
    # It is on the schedule, and no scheduled query lies between ``elapsed`` and it.
    schedule = [
        query_offset(i, first_delay=first_delay, interval=interval)
        for i in range(int(max(elapsed, 0) / interval) + 12)
    ]
    assert min(s for s in schedule if s > elapsed) == pytest.approx(nxt)


# -- hostile bytes -------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        parse_packet(data)
    except MdnsDecodeError:
        pass


VALID_PACKETS: Final = [
    bytes.fromhex(h) for h in (QUERY_HEX, RESPONSE_HEX, GO_RESPONSE_HEX, RUST_RESPONSE_HEX)
]


@settings(max_examples=400, deadline=None)
@given(
    base=st.sampled_from(VALID_PACKETS),
    edits=st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.integers(0, 600),
)
def test_mutated_packets_raise_only_decode_error(
    base: bytes, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(base)
    for pos, value in edits:
        data[pos % len(data)] = value
    del data[max(cut, 12) :]
    try:
        result = parse_packet(bytes(data))
    except MdnsDecodeError:
        return
    assert result is None or isinstance(result, MdnsQuery | MdnsResponse)


# -- services on the loopback interface -----------------------------------------------------------


def private_port() -> int:
    """A UDP port no one on this machine uses now: each test gets its own mDNS group."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def lo_config(port: int, **changes: object) -> MdnsConfig:
    return MdnsConfig(interface="lo", port=port, **changes)  # type: ignore[arg-type]


@pytest.mark.timeout(30)
async def test_two_services_on_lo_discover_each_other() -> None:
    config = lo_config(private_port())
    seen_by_a: list[DiscoveredPeer] = []
    async with (
        open_host(KeyPair.generate()) as host_a,
        open_host(KeyPair.generate()) as host_b,
        open_mdns(host_a, config, on_discovered=seen_by_a.append) as mdns_a,
        open_mdns(host_b, config) as mdns_b,
    ):
        assert mdns_a.peer_name != mdns_b.peer_name
        with trio.fail_after(10):
            found_b = await mdns_a.wait_discovered(host_b.peer_id)
            found_a = await mdns_b.wait_discovered(host_a.peer_id)
        assert found_b.addrs == tuple(host_b.listen_addrs)
        assert found_a.addrs == tuple(host_a.listen_addrs)
        assert found_b.peer_name == mdns_b.peer_name
        assert 0 < found_b.ttl <= DEFAULT_TTL
        # Into the peer store, and dialable from there alone.
        now = trio.current_time()
        assert host_a.peer_store.addrs(host_b.peer_id, now) == list(host_b.listen_addrs)
        with trio.fail_after(10):
            conn = await host_a.connect(host_b.peer_id)
        assert conn.remote_peer == host_b.peer_id
        # We never report ourselves, and we report the other peer once.
        assert mdns_a.discovered_peers() == [host_b.peer_id]
        assert [p.peer_id for p in seen_by_a] == [host_b.peer_id]
        stats = mdns_a.statistics()
        assert stats.queries_sent >= 1
        assert stats.responses_sent >= 1
        assert stats.peers_discovered == 1
        assert stats.malformed_packets == 0


@pytest.mark.timeout(30)
async def test_goodbye_then_rediscovery_and_malformed_packets() -> None:
    port = private_port()
    config = lo_config(port)
    seen: list[PeerID] = []
    async with (
        open_host(KeyPair.generate()) as host_a,
        open_host(KeyPair.generate()) as host_b,
        open_mdns(host_a, config, on_discovered=lambda p: seen.append(p.peer_id)) as mdns_a,
    ):
        # Garbage on the group first: it is counted and dropped.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            raw.sendto(b"\x00\x00\x00\x00garbage", (MDNS_IPV4_GROUP, port))
        async with open_mdns(host_b, config):
            with trio.fail_after(10):
                await mdns_a.wait_discovered(host_b.peer_id)
        # B said goodbye on leaving: A forgot it, so a new B instance is news again.
        assert mdns_a.discovered(host_b.peer_id) is None
        async with open_mdns(host_b, config):
            with trio.fail_after(10):
                await mdns_a.wait_discovered(host_b.peer_id)
        assert seen == [host_b.peer_id, host_b.peer_id]
        assert mdns_a.statistics().malformed_packets >= 1


@pytest.mark.timeout(30)
async def test_three_services_and_a_private_network() -> None:
    port = private_port()
    public, private = lo_config(port), lo_config(port, service_name="_p2p-c0ffee._udp.local.")
    async with (
        open_host(KeyPair.generate()) as h1,
        open_host(KeyPair.generate()) as h2,
        open_host(KeyPair.generate()) as h3,
        open_mdns(h1, public) as m1,
        open_mdns(h2, public) as m2,
        open_mdns(h3, private) as m3,
    ):
        with trio.fail_after(10):
            await m1.wait_discovered(h2.peer_id)
            await m2.wait_discovered(h1.peer_id)
        # h3 hears the same group but a different service: neither side learns the other.
        assert m3.discovered_peers() == []
        assert h3.peer_id not in m1.discovered_peers()
        assert m3.statistics().packets_received > 0


@pytest.mark.timeout(30)
async def test_unspecified_listen_address_is_announced_as_the_interface_address() -> None:
    config = lo_config(private_port())
    wildcard = HostConfig(listen=(ma("/ip4/0.0.0.0/tcp/0"),))
    async with (
        open_host(KeyPair.generate(), wildcard) as host_a,
        open_host(KeyPair.generate()) as host_b,
        open_mdns(host_a, config) as mdns_a,
        open_mdns(host_b, config) as mdns_b,
    ):
        port = host_a.listen_addrs[0].value_for("tcp")
        assert mdns_a.interface_address == "127.0.0.1"
        assert [str(a) for a in mdns_a.announced_addrs()] == [f"/ip4/127.0.0.1/tcp/{port}"]
        with trio.fail_after(10):
            found = await mdns_b.wait_discovered(host_a.peer_id)
        assert [str(a) for a in found.addrs] == [f"/ip4/127.0.0.1/tcp/{port}"]


async def test_query_schedule_in_the_service(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        open_host(KeyPair.generate()) as host,
        open_mdns(host, lo_config(private_port())) as service,
    ):
        await trio.sleep(100.0)  # virtual time
        # Queries at ~0.1, 1.1, 3.1, 7.1, 15.1, 31.1 and 63.1 s; the next is at 123.1 s.
        assert service.statistics().queries_sent == 7


@pytest.mark.parametrize(
    ("interface", "message"),
    [("no-such-if0", "no such interface"), ("203.0.113.123", "mDNS interface")],
)
async def test_bad_interface_is_a_clear_error(interface: str, message: str) -> None:
    async with open_host(KeyPair.generate()) as host:
        with pytest.raises(MdnsError, match=message):
            async with open_mdns(host, MdnsConfig(interface=interface, port=private_port())):
                pytest.fail("mDNS started on a bad interface")  # pragma: no cover


@pytest.mark.parametrize(
    "changes",
    [
        {"port": 0},
        {"query_interval": 0.5},
        {"ttl": 0},
        {"max_addr_ttl": 0.0},
        {"response_delay": (0.2, 0.1)},
        {"min_response_interval": -1.0},
        {"max_peers": 0},
        {"max_concurrent_dials": 0},
    ],
)
def test_config_out_of_range(changes: dict[str, object]) -> None:
    (name,) = changes
    with pytest.raises(ValueError, match=name):
        MdnsConfig(**changes)  # type: ignore[arg-type]


async def test_callback_errors_are_contained(caplog: pytest.LogCaptureFixture) -> None:
    config = lo_config(private_port())

    def broken(peer: DiscoveredPeer) -> None:
        raise RuntimeError("callback bug")

    async with (
        open_host(KeyPair.generate()) as host_a,
        open_host(KeyPair.generate()) as host_b,
        open_mdns(host_a, config, on_discovered=broken) as mdns_a,
        open_mdns(host_b, config),
    ):
        with trio.fail_after(10):
            await mdns_a.wait_discovered(host_b.peer_id)
    assert "discovery callback raised" in caplog.text
