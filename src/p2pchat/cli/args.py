"""The argument types of the command line: each turns a word into a value or one clear line.

The types that need the identity or multiaddr modules import them when they run, so a command
without such an argument never loads them.
"""

from __future__ import annotations

import argparse
import functools
import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ..multiaddr import Multiaddr


def multiaddr(text: str) -> Multiaddr:
    """A multiaddr.

    Raises:
        argparse.ArgumentTypeError: malformed.
    """
    from ..multiaddr import Multiaddr, MultiaddrError

    try:
        return Multiaddr.from_string(text)
    except MultiaddrError as exc:
        raise argparse.ArgumentTypeError(f"invalid multiaddr {text!r}: {exc}") from None


def bootstrap(text: str) -> Multiaddr:
    """A bootstrap entry (specs/cli.md "Bootstrap").

    Raises:
        argparse.ArgumentTypeError: not one.
    """
    from ..discovery.bootstrap import BootstrapError, parse_bootstrap_entry

    try:
        return parse_bootstrap_entry(text)
    except BootstrapError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def peer(text: str) -> str:
    """A peer ID or a multiaddr ending in ``/p2p/<id>`` (checked here, sent as text).

    Raises:
        argparse.ArgumentTypeError: neither.
    """
    from ..errors import DecodeError
    from ..identity import PeerID

    if text.startswith("/"):
        addr = multiaddr(text)
        try:
            peer_id = addr.peer_id
        except DecodeError as exc:
            raise argparse.ArgumentTypeError(f"invalid peer id in {text!r}: {exc}") from None
        if peer_id is None:
            raise argparse.ArgumentTypeError(f"the address must end in /p2p/<peer id>: {text}")
        return text
    try:
        PeerID.from_string(text)
    except DecodeError:
        raise argparse.ArgumentTypeError(f"not a peer id or a multiaddr: {text!r}") from None
    return text


def positive_int(text: str) -> int:
    """A whole number of at least 1.

    Raises:
        argparse.ArgumentTypeError: not one.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


_SIZE: Final = r"^\s*(\d+)\s*(B|KIB|KB|K|MIB|MB|M|GIB|GB|G)?\s*$"
_UNITS: Final = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


@functools.cache
def _size_pattern() -> re.Pattern[str]:
    """:data:`_SIZE`, compiled when first used (compiling costs start-up time otherwise)."""
    return re.compile(_SIZE, re.IGNORECASE)


def byte_size(text: str) -> int:
    """A byte count: ``1000``, ``64KiB``, ``10MiB``, ``1GiB`` (K, M and G are powers of 1024).

    Raises:
        argparse.ArgumentTypeError: not one.
    """
    match = _size_pattern().match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1000, 64KiB, 10MiB)")
    return int(match.group(1)) * _UNITS[(match.group(2) or "")[:1].upper()]


def seconds(text: str) -> float:
    """A number of seconds in (0, 3600].

    Raises:
        argparse.ArgumentTypeError: not one.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be in (0, 3600] seconds: {value}")
    return value
