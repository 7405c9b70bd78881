"""What a roster message says, for display in history (specs/control.md "Messages")."""

from __future__ import annotations

from typing import Any

from ..chat.core import cbor
from ..errors import DecodeError
from ..identity import PeerID


def roster_summary(content: bytes) -> dict[str, Any] | None:
    """What a roster message's (plaintext) artifact says, for display: the whole roster
    (format 1), or the change (format 2, specs/chat.md §20)."""
    try:
        value = cbor.loads(content, max_size=len(content))
        if "v" in value:
            return _delta_summary(value)
        roster = value["roster"]
        members = [
            {"peer_id": str(PeerID.from_bytes(m["peer"])), "role": str(m["role"])}
            for m in roster["members"]
        ]
        return {"epoch": int(roster["epoch"]), "quorum": int(roster["quorum"]), "members": members}
    except (DecodeError, KeyError, TypeError, ValueError):
        return None


def _delta_summary(value: dict[str, Any]) -> dict[str, Any]:
    """The change a format-2 roster artifact makes (raises as :func:`roster_summary` catches)."""
    out: dict[str, Any] = {
        "epoch": int(value["epoch"]),
        "added": [
            {"peer_id": str(PeerID.from_bytes(m["peer"])), "role": str(m["role"])}
            for m in value["add"]
        ],
        "removed": [str(PeerID.from_bytes(p)) for p in value["remove"]],
        "roles": [
            {"peer_id": str(PeerID.from_bytes(r["peer"])), "role": str(r["role"])}
            for r in value["roles"]
        ],
    }
    if "quorum" in value:
        out["quorum"] = int(value["quorum"])
    if "name" in value:
        out["name"] = str(value["name"])
    if "owner" in value:
        out["owner"] = str(PeerID.from_bytes(value["owner"]))
    return out
