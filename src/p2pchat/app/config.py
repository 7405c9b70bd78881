"""The node's configuration file: ``config.toml`` in the data dir (specs/cli.md, "Config").

Read with :mod:`tomllib`; written once, by ``p2pchat init``, from :data:`CONFIG_TEMPLATE`, a
commented file that shows every key with its default. Every key is optional. An unknown section
or key, a value of the wrong type, or a malformed address is refused with one line that names
the file, the key and what is wrong: a typo must not silently fall back to a default.
Command-line flags override the file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from ..discovery.bootstrap import BootstrapError, parse_bootstrap_entry
from ..errors import P2PChatError
from ..multiaddr import Multiaddr, MultiaddrError
from .logsetup import DEFAULT_FORMAT, DEFAULT_LEVEL, LOG_FORMATS, LOG_LEVELS

#: The default listen address: loopback only, on a fixed port so ``make run`` is stable.
DEFAULT_PORT: Final = 4001
DEFAULT_LISTEN: Final = f"/ip4/127.0.0.1/tcp/{DEFAULT_PORT}"
DEFAULT_MDNS_INTERFACE: Final = "lo"
MAX_CONFIG_SIZE: Final = 1024 * 1024

CONFIG_TEMPLATE: Final = f"""\
# p2pchat node configuration (TOML). Every key is optional: a key left out takes the default
# shown here. Command-line flags override this file (see: p2pchat node --help).

[node]
# Addresses to listen on, as multiaddrs. The default keeps the node on this machine.
# To open it to your LAN or the internet, listen on every interface (and open the port in
# your firewall):
#   listen = ["/ip4/0.0.0.0/tcp/{DEFAULT_PORT}", "/ip6/::/tcp/{DEFAULT_PORT}"]
# Port 0 picks a free port at each start.
listen = ["{DEFAULT_LISTEN}"]

[discovery]
# Peers to connect to at start and to stay connected to (redialed with backoff). Each is a
# multiaddr ending in /p2p/<peer id>, or a /dnsaddr/<domain> name resolved through DNS TXT
# records, e.g.
#   bootstrap = ["/ip4/192.0.2.7/tcp/{DEFAULT_PORT}/p2p/12D3KooW...", "/dnsaddr/example.org"]
bootstrap = []
# Find peers on the local network with mDNS.
mdns = true
# The interface mDNS uses: "lo" keeps it on this machine; name your LAN interface
# (e.g. "eth0", "wlan0") to find the peers on your network.
mdns_interface = "{DEFAULT_MDNS_INTERFACE}"

[chat]
# Seconds to wait for a quorum of ratifiers before "send" reports a message as pending
# (it stays queued and goes through when they are reachable).
send_timeout = 10.0
# Seconds to wait for one answer from a peer.
query_timeout = 5.0

[artifacts]
# Files of any size (specs/artifacts.md). Free space (MiB) kept on the data dir's disk: a file
# whose chunks would eat into it is refused, and nothing already stored is lost.
disk_reserve_mib = 512
# Members fetch a delivered file at once, unless it is larger than this many MiB; then they
# fetch it when it is read ("p2pchat get"). 0: always at once.
lazy_above_mib = 0
# Days a file is kept after its message was sent, on a node that is not a ratifier of the
# group (a ratifier keeps every file: custody); older ones are fetched again when read. 0: for ever.
keep_days = 0
# MiB of files one author can make this node (as a ratifier) hold for messages not yet ratified.
custody_quota_mib = 4096

[limits]
# What the node allows other peers (specs/host.md, "Resource limits"). Connections in all:
max_connections = 256
# Inbound connections from one IP address, and connections with one peer:
max_inbound_per_ip = 16
max_per_peer = 4
# Handshakes in progress, in all and from one IP address:
max_handshakes = 64
max_handshakes_per_ip = 8
# Connection slots kept for our own dials and for the members of our groups (at most half):
reserved_slots = 32
# Inbound streams of one peer negotiating without a byte sent yet, and of one protocol at once
# (unless the protocol sets its own: 8 for /p2pchat/1.0.0) (specs/host.md, "Stream limits"):
max_negotiating_per_peer = 8
max_streams_per_protocol = 64

[perf]
# Serve the libp2p perf protocol (/perf/1.0.0), so others can measure throughput to this node.
enabled = false

[search]
# Full-text search over this node's own decrypted history (p2pchat search). The index
# (search.sqlite in the data dir, mode 0600) holds message plaintext; false deletes it at start.
enabled = true

[dht]
# Join the Kademlia DHT (/ipfs/kad/1.0.0) to find group members anywhere by their peer id.
enabled = false
# "auto": a DHT server only while AutoNAT finds this node reachable from outside, else a
# client; or "server", or "client".
mode = "auto"
# DHT peers to join through, multiaddrs ending in /p2p/<peer id>. None by default: no public
# peer is dialed unless you name it here.
bootstrap = []

[autonat]
# Ask peers to dial this node back (AutoNAT v1) to learn whether it is reachable, and dial
# back peers that ask (only at their own IP, rate limited).
enabled = true
[plugins]
# Plug-ins to load at start (specs/plugins.md): paths to Python files, or module names.
#   load = ["~/p2pchat-plugins/echo.py", "mypackage.p2pchat_plugin"]
load = []
# Load the plug-ins that installed packages declare (entry-point group "p2pchat.plugins").
entry_points = true

[relay]
# Serve as a circuit relay (/libp2p/circuit/relay/0.2.0/hop) for peers behind NATs, within the
# limits of specs/relay.md.
enabled = false
# Accept relayed connections and dial /p2p-circuit addresses.
client = true
# Relays to hold a reservation on, multiaddrs ending in /p2p/<peer id>; the node then
# advertises /p2p-circuit addresses through them. None by default.
reserve = []
# Dial from the listen port (SO_REUSEPORT), so that hole punching (DCUtR) through a NAT can
# replace a relayed connection with a direct one.
hole_punch = false
# While AutoNAT says the node is private, hold this many reservations in all: the relays of
# `reserve` first, then relays it knows of or finds in the DHT (specs/relay.md). 0: never.
auto_relays = 2

[log]
# debug, info, warning or error
level = "{DEFAULT_LEVEL}"
# text, or json (one object per line)
format = "{DEFAULT_FORMAT}"
"""


class ConfigError(P2PChatError):
    """The configuration file cannot be read or holds something wrong; one line says what."""


@attrs.frozen
class Config:
    """Everything the configuration file can set, with its defaults."""

    listen: tuple[Multiaddr, ...] = (Multiaddr.from_string(DEFAULT_LISTEN),)
    bootstrap: tuple[Multiaddr, ...] = ()
    mdns: bool = True
    mdns_interface: str = DEFAULT_MDNS_INTERFACE
    send_timeout: float = 10.0
    query_timeout: float = 5.0
    perf: bool = False
    #: [search]: the full-text index of our decrypted history (app/reading.py).
    search: bool = True
    #: [limits]: the Host's resource limits (net/resources.py holds the same defaults).
    max_connections: int = 256
    max_inbound_per_ip: int = 16
    max_per_peer: int = 4
    max_handshakes: int = 64
    max_handshakes_per_ip: int = 8
    reserved_slots: int = 32
    max_negotiating_per_peer: int = 8
    max_streams_per_protocol: int = 64
    log_level: str = DEFAULT_LEVEL
    log_format: str = DEFAULT_FORMAT
    #: [dht] and [autonat] (app/internet.py).
    dht: bool = False
    dht_mode: str = "auto"
    dht_bootstrap: tuple[Multiaddr, ...] = ()
    autonat: bool = True
    #: [artifacts]: MiB kept free on the data dir's disk; lazy fetching above this MiB (0: never).
    disk_reserve_mib: int = 512
    lazy_above_mib: int = 0
    #: [artifacts]: days files are kept by a non-ratifier (0: for ever); custody quota in MiB.
    keep_days: int = 0
    custody_quota_mib: int = 4096
    #: [plugins]: paths or module names to load, and whether to load the installed ones.
    plugins: tuple[str, ...] = ()
    plugin_entry_points: bool = True
    #: [relay] (app/relaying.py).
    relay: bool = False
    relay_client: bool = True
    relay_reserve: tuple[Multiaddr, ...] = ()
    relay_hole_punch: bool = False
    relay_auto: int = 2


# -- value checkers: each returns the value or raises _InvalidValueError: what was expected ---


class _InvalidValueError(Exception):
    """A configuration value is wrong; the message says what was expected."""


def _listen(value: Any) -> tuple[Multiaddr, ...]:
    return tuple(_multiaddr(item) for item in _list_of_str(value))


def _bootstrap(value: Any) -> tuple[Multiaddr, ...]:
    out: list[Multiaddr] = []
    for item in _list_of_str(value):
        try:
            out.append(parse_bootstrap_entry(item))
        except BootstrapError as exc:
            raise _InvalidValueError(str(exc)) from None
    return tuple(out)


def _dht_bootstrap(value: Any) -> tuple[Multiaddr, ...]:
    out = _listen(value)
    for addr in out:
        if addr.peer_id is None:
            raise _InvalidValueError(f"{addr} must end in /p2p/<peer id>")
    return out


def _list_of_str(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _InvalidValueError("must be a list of strings")
    return value


def _multiaddr(text: str) -> Multiaddr:
    try:
        return Multiaddr.from_string(text)
    except MultiaddrError as exc:
        raise _InvalidValueError(f"invalid multiaddr {text!r}: {exc}") from None


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _InvalidValueError("must be true or false")
    return value


def _interface(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 15 or "/" in value:
        raise _InvalidValueError('must be a network interface name such as "lo" or "eth0"')
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise _InvalidValueError("must be a number of seconds in (0, 3600]")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
        raise _InvalidValueError("must be a whole number from 1 to 100000")
    return value


def _auto_relays(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 8:
        raise _InvalidValueError("must be a whole number from 0 to 8")
    return value


def _reserve(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 50_000:
        raise _InvalidValueError("must be a whole number from 0 to 50000")
    return value


def _mib(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**30:
        raise _InvalidValueError("must be a whole number of MiB, 0 or more")
    return value


def _days(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 36_500:
        raise _InvalidValueError("must be a whole number of days from 0 to 36500")
    return value


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise _InvalidValueError(f"must be one of {', '.join(repr(c) for c in choices)}")
        return str(value)

    return check


#: section -> key -> (Config field, checker)
_SCHEMA: Final[Mapping[str, Mapping[str, tuple[str, Callable[[Any], Any]]]]] = {
    "node": {"listen": ("listen", _listen)},
    "discovery": {
        "bootstrap": ("bootstrap", _bootstrap),
        "mdns": ("mdns", _bool),
        "mdns_interface": ("mdns_interface", _interface),
    },
    "chat": {
        "send_timeout": ("send_timeout", _seconds),
        "query_timeout": ("query_timeout", _seconds),
    },
    "limits": {
        "max_connections": ("max_connections", _count),
        "max_inbound_per_ip": ("max_inbound_per_ip", _count),
        "max_per_peer": ("max_per_peer", _count),
        "max_handshakes": ("max_handshakes", _count),
        "max_handshakes_per_ip": ("max_handshakes_per_ip", _count),
        "reserved_slots": ("reserved_slots", _reserve),
        "max_negotiating_per_peer": ("max_negotiating_per_peer", _count),
        "max_streams_per_protocol": ("max_streams_per_protocol", _count),
    },
    "artifacts": {
        "disk_reserve_mib": ("disk_reserve_mib", _mib),
        "lazy_above_mib": ("lazy_above_mib", _mib),
        "keep_days": ("keep_days", _days),
        "custody_quota_mib": ("custody_quota_mib", _mib),
    },
    "perf": {"enabled": ("perf", _bool)},
    "search": {"enabled": ("search", _bool)},
    "dht": {
        "enabled": ("dht", _bool),
        "mode": ("dht_mode", _choice("auto", "client", "server")),
        "bootstrap": ("dht_bootstrap", _dht_bootstrap),
    },
    "autonat": {"enabled": ("autonat", _bool)},
    "plugins": {
        "load": ("plugins", lambda value: tuple(_list_of_str(value))),
        "entry_points": ("plugin_entry_points", _bool),
    },
    "relay": {
        "enabled": ("relay", _bool),
        "client": ("relay_client", _bool),
        "reserve": ("relay_reserve", _dht_bootstrap),
        "hole_punch": ("relay_hole_punch", _bool),
        "auto_relays": ("relay_auto", _auto_relays),
    },
    "log": {
        "level": ("log_level", _choice(*LOG_LEVELS)),
        "format": ("log_format", _choice(*LOG_FORMATS)),
    },
}


def parse_config(text: str, *, source: str = "config") -> Config:
    """The configuration in ``text`` (TOML).

    Raises:
        ConfigError: not TOML, an unknown section or key, or a bad value (the message names
            ``source`` and the key).
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for section, table in document.items():
        keys = _SCHEMA.get(section)
        if keys is None:
            known = ", ".join(f"[{s}]" for s in _SCHEMA)
            raise ConfigError(f"{source}: unknown section [{section}] (known: {known})")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for key, value in table.items():
            entry = keys.get(key)
            if entry is None:
                known = ", ".join(keys)
                raise ConfigError(f"{source}: unknown key {key!r} in [{section}] (known: {known})")
            field, check = entry
            try:
                values[field] = check(value)
            except _InvalidValueError as exc:
                raise ConfigError(f"{source}: [{section}] {key} {exc}") from None
    return Config(**values)


def load_config(path: Path, *, required: bool = False) -> Config:
    """The configuration in ``path``; the defaults if it does not exist and is not ``required``.

    Raises:
        ConfigError: the file is required and missing, unreadable, too large or wrong.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_SIZE + 1)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return Config()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if len(raw) > MAX_CONFIG_SIZE:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_SIZE} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return parse_config(text, source=str(path))


def write_config_template(path: Path, *, overwrite: bool = False) -> None:
    """Write :data:`CONFIG_TEMPLATE` to ``path`` (mode 0600).

    Raises:
        ConfigError: the file exists (and not ``overwrite``), or cannot be written.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"{path} already exists; edit it, or run init with --force to rewrite it"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(CONFIG_TEMPLATE)
