"""The configuration file: the template, defaults, overrides and one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.app.config import (
    CONFIG_TEMPLATE,
    DEFAULT_LISTEN,
    Config,
    ConfigError,
    load_config,
    parse_config,
    write_config_template,
)
from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.resources import ResourceLimits

PEER = KeyPair.from_seed(bytes(32)).peer_id


def test_the_template_parses_to_the_defaults() -> None:
    assert parse_config(CONFIG_TEMPLATE) == Config()
    limits = ResourceLimits()
    assert (Config().max_connections, Config().reserved_slots) == (
        limits.max_connections,
        limits.reserved_slots,
    )
    assert (Config().max_negotiating_per_peer, Config().max_streams_per_protocol) == (
        limits.max_negotiating_per_peer,
        limits.max_streams_per_protocol,
    )
    assert Config().listen == (Multiaddr.from_string(DEFAULT_LISTEN),)
    assert DEFAULT_LISTEN.startswith("/ip4/127.0.0.1/tcp/")  # loopback unless told otherwise
    assert Config().mdns_interface == "lo"
    assert Config().perf is False
    # No DHT and no public bootstrap peer unless the user opts in.
    assert (Config().dht, Config().dht_bootstrap) == (False, ())


def test_every_key_is_read() -> None:
    text = f"""
[node]
listen = ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"]
[discovery]
bootstrap = ["/ip4/127.0.0.1/tcp/4001/p2p/{PEER}", "/dnsaddr/example.org"]
mdns = false
mdns_interface = "eth0"
[chat]
send_timeout = 3
query_timeout = 1.5
[limits]
max_connections = 100
max_inbound_per_ip = 5
max_per_peer = 2
max_handshakes = 20
max_handshakes_per_ip = 3
reserved_slots = 10
max_negotiating_per_peer = 3
max_streams_per_protocol = 7
[perf]
enabled = true
[dht]
enabled = true
mode = "server"
bootstrap = ["/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"]
[autonat]
enabled = false
[log]
level = "debug"
format = "json"
"""
    config = parse_config(text)
    assert (config.dht, config.dht_mode, config.autonat) == (True, "server", False)
    assert [str(a) for a in config.dht_bootstrap] == [f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"]
    assert (config.max_connections, config.max_inbound_per_ip, config.max_per_peer) == (100, 5, 2)
    assert (config.max_handshakes, config.max_handshakes_per_ip) == (20, 3)
    assert config.reserved_slots == 10
    assert (config.max_negotiating_per_peer, config.max_streams_per_protocol) == (3, 7)
    assert [str(a) for a in config.listen] == ["/ip4/127.0.0.1/tcp/0", "/ip6/::1/tcp/0"]
    assert [str(a) for a in config.bootstrap] == [
        f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}",
        "/dnsaddr/example.org",
    ]
    assert (config.mdns, config.mdns_interface) == (False, "eth0")
    assert (config.send_timeout, config.query_timeout) == (3.0, 1.5)
    assert config.perf is True
    assert (config.log_level, config.log_format) == ("debug", "json")


def test_the_plugins_section_is_read() -> None:
    config = parse_config('[plugins]\nload = ["./echo.py", "mypkg.plugin"]\nentry_points = false\n')
    assert config.plugins == ("./echo.py", "mypkg.plugin")
    assert config.plugin_entry_points is False
    assert (Config().plugins, Config().plugin_entry_points) == ((), True)


def test_a_partial_file_keeps_the_other_defaults() -> None:
    config = parse_config('[log]\nlevel = "info"\n')
    assert config.log_level == "info"
    assert config.listen == Config().listen


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[nodes]\nlisten = []", "unknown section [nodes]"),
        ("[node]\nlisen = []", "unknown key 'lisen' in [node] (known: listen)"),
        ("[node]\nlisten = '/ip4/127.0.0.1/tcp/1'", "[node] listen must be a list of strings"),
        ("[node]\nlisten = ['/ip4/1.2.3']", "[node] listen invalid multiaddr"),
        ("[discovery]\nbootstrap = ['/ip4/127.0.0.1/tcp/1']", "must end in /p2p/<peer id>"),
        ("[discovery]\nmdns = 'yes'", "[discovery] mdns must be true or false"),
        ("[discovery]\nmdns_interface = ''", "[discovery] mdns_interface must be a network"),
        ("[chat]\nsend_timeout = 0", "[chat] send_timeout must be a number of seconds"),
        ("[chat]\nsend_timeout = true", "[chat] send_timeout must be a number of seconds"),
        ("[log]\nlevel = 'loud'", "[log] level must be one of"),
        ("[limits]\nmax_connections = 0", "[limits] max_connections must be a whole number"),
        ("[limits]\nmax_per_peer = 2.5", "[limits] max_per_peer must be a whole number"),
        ("[limits]\nreserved_slots = -1", "[limits] reserved_slots must be a whole number"),
        ("[log]\nformat = 'xml'", "[log] format must be one of"),
        ("[dht]\nmode = 'public'", "[dht] mode must be one of"),
        (
            "[dht]\nbootstrap = ['/ip4/127.0.0.1/tcp/1']",
            "[dht] bootstrap /ip4/127.0.0.1/tcp/1 must",
        ),
        ("[autonat]\nenabled = 1", "[autonat] enabled must be true or false"),
        ("[plugins]\nload = 'echo.py'", "[plugins] load must be a list of strings"),
        ("node = 1", "[node] must be a table"),
        ("[node\n", "not valid TOML"),
    ],
)
def test_mistakes_are_refused_in_one_line_naming_the_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="my.toml")
    message = str(info.value)
    assert message.startswith("my.toml: ")
    assert expected in message
    assert "\n" not in message


def test_load_config(tmp_path: Path) -> None:
    missing = tmp_path / "config.toml"
    assert load_config(missing) == Config()
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(missing, required=True)
    missing.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(missing)
    missing.write_text("[perf]\nenabled = true\n")
    assert load_config(missing).perf is True


def test_write_config_template_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    write_config_template(path)
    assert path.read_text() == CONFIG_TEMPLATE
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("# mine\n")
    with pytest.raises(ConfigError, match="already exists"):
        write_config_template(path)
    assert path.read_text() == "# mine\n"
    write_config_template(path, overwrite=True)
    assert path.read_text() == CONFIG_TEMPLATE


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    return '""'


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["node", "discovery", "chat", "perf", "log", "other"]),
    st.sampled_from(
        ["listen", "bootstrap", "mdns", "mdns_interface", "send_timeout", "level", "format", "x"]
    ),
    _VALUES,
)
def test_any_value_under_any_key_gives_a_config_or_one_config_error(
    section: str, key: str, value: object
) -> None:
    outcome = _parse(f"[{section}]\n{key} = {_toml_value(value)}\n")
    assert isinstance(outcome, Config) or "\n" not in outcome


def _parse(text: str) -> Config | str:
    """The config, or the one-line message of the ConfigError (any other exception escapes)."""
    try:
        return parse_config(text)
    except ConfigError as exc:
        return str(exc)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_config_or_one_config_error(text: str) -> None:
    outcome = _parse(text)
    assert isinstance(outcome, Config) or outcome.startswith("config: ")


def test_the_artifacts_section_reaches_the_chat_config(tmp_path: Path) -> None:
    from p2pchat.app.daemon import MIB, NodeOptions

    config = parse_config("[artifacts]\ndisk_reserve_mib = 64\nlazy_above_mib = 100\n")
    artifacts = NodeOptions.from_config(tmp_path, config).chat.artifacts
    assert (artifacts.disk_reserve, artifacts.fetch_max) == (64 * MIB, 100 * MIB)
    default = NodeOptions.from_config(tmp_path, parse_config("")).chat.artifacts
    assert (default.disk_reserve, default.fetch_max) == (512 * MIB, None)
    with pytest.raises(ConfigError, match=r"\[artifacts\] lazy_above_mib must be a whole number"):
        parse_config("[artifacts]\nlazy_above_mib = -1\n")


def test_keep_days_and_the_custody_quota_reach_the_chat_config(tmp_path: Path) -> None:
    from p2pchat.app.daemon import MIB, NodeOptions

    config = parse_config("[artifacts]\nkeep_days = 30\ncustody_quota_mib = 1024\n")
    artifacts = NodeOptions.from_config(tmp_path, config).chat.artifacts
    assert (artifacts.keep_days, artifacts.custody_quota) == (30, 1024 * MIB)
    default = NodeOptions.from_config(tmp_path, parse_config("")).chat.artifacts
    assert (default.keep_days, default.custody_quota) == (None, 4096 * MIB)
    with pytest.raises(ConfigError, match=r"\[artifacts\] keep_days must be a whole number"):
        parse_config("[artifacts]\nkeep_days = 1.5\n")
