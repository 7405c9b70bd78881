"""Signed peer records through py-libp2p, for the interop tests (runs in .venv-interop).

    python pylibp2p_record.py make SEED_HEX SEQ MULTIADDR...   -> {"peer", "envelope"} (hex)
    python pylibp2p_record.py open ENVELOPE_HEX                -> {"peer", "seq", "addrs"}

One JSON line on stdout; a record py-libp2p refuses prints {"error": "..."} and exits 1.
"""

from __future__ import annotations

import json
import sys

import multiaddr
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.envelope import consume_envelope, seal_record
from libp2p.peer.id import ID
from libp2p.peer.peer_record import PeerRecord


def main() -> int:
    if sys.argv[1] == "make":
        pair = create_new_key_pair(bytes.fromhex(sys.argv[2]))
        peer = ID.from_pubkey(pair.public_key)
        addrs = [multiaddr.Multiaddr(a) for a in sys.argv[4:]]
        record = PeerRecord(peer, addrs, seq=int(sys.argv[3]))
        envelope = seal_record(record, pair.private_key).marshal_envelope()
        print(json.dumps({"peer": peer.to_base58(), "envelope": envelope.hex()}))
        return 0
    try:
        _envelope, record = consume_envelope(bytes.fromhex(sys.argv[2]), "libp2p-peer-record")
    except Exception as exc:  # whatever py-libp2p raises is a refusal to report
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 1
    addrs = [str(a) for a in record.addrs]
    print(json.dumps({"peer": record.peer_id.to_base58(), "seq": record.seq, "addrs": addrs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
