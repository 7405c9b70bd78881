"""The node's data directory: everything a node keeps lives there (specs/cli.md, "Data dir").

Resolution order: an explicit path (``--data-dir``), then ``$P2PCHAT_DATA_DIR``,
then ``$XDG_DATA_HOME/p2pchat``, then ``~/.local/share/p2pchat``. The directory is
created with mode 0700. Its files:

* ``identity.key``: the node's Ed25519 key (mode 0600);
* ``config.toml``: the configuration (written by ``p2pchat init``);
* ``store.sqlite3``, ``store.lock``: the chat store and the lock that keeps a second node off it;
* ``peers.json``: the peers this node has been connected to, for reconnecting after a restart;
* ``control.sock``: the running node's control socket (mode 0600), gone when it stops.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..errors import P2PChatError

if TYPE_CHECKING:
    from ..identity import KeyPair

# The identity module (and the cryptography it needs) loads only when a key is read or made:
# the commands that only find the control socket through this module start without it.

ENV_DATA_DIR: Final = "P2PCHAT_DATA_DIR"
IDENTITY_FILE: Final = "identity.key"
CONFIG_FILE: Final = "config.toml"
PEERS_FILE: Final = "peers.json"
CONTROL_SOCKET: Final = "control.sock"


class DataDirError(P2PChatError):
    """The data directory cannot be created or used."""


def resolve_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data directory to use, following the resolution order above."""
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "p2pchat"


def ensure_data_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed and return it.

    Raises:
        DataDirError: it cannot be created, or exists and is not a directory.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise DataDirError(f"data dir {path} exists and is not a directory") from exc
    except OSError as exc:
        raise DataDirError(f"cannot create data dir {path}: {exc.strerror}") from exc
    return path


def load_or_create_identity(data_dir: Path) -> KeyPair:
    """The node's key pair from ``data_dir``, generated and saved on first use.

    Raises:
        DataDirError: the data dir cannot be created.
        KeyFileError: an existing key file is unreadable, malformed or too open.
    """
    from ..identity import KeyPair, load_key_file, save_key_file

    key_path = ensure_data_dir(data_dir) / IDENTITY_FILE
    if key_path.exists():
        return load_key_file(key_path)
    pair = KeyPair.generate()
    save_key_file(key_path, pair)
    return pair


def config_path(data_dir: Path) -> Path:
    """Where the configuration file lives."""
    return data_dir / CONFIG_FILE


def peers_path(data_dir: Path) -> Path:
    """Where the known-peers file lives."""
    return data_dir / PEERS_FILE


def control_socket_path(data_dir: Path) -> Path:
    """Where the running node's control socket lives."""
    return data_dir / CONTROL_SOCKET
