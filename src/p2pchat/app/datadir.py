"""The node's data directory: everything a node keeps lives there (specs/cli.md, "Data dir").

Resolution order: an explicit path (``--data-dir``), then ``$P2PCHAT_DATA_DIR``,
then ``$XDG_DATA_HOME/p2pchat``, then ``~/.local/share/p2pchat``. The directory is
created with mode 0700; an existing one that group or others may enter, read or write is refused
(with the ``chmod 700`` that fixes it), since it holds the key and the control socket. Its files:

* ``identity.key``: the node's Ed25519 key (mode 0600);
* ``config.toml``: the configuration (written by ``p2pchat init``);
* ``store.sqlite3``, ``store.lock``: the chat store and the lock that keeps a second node off it;
* ``peers.json``: the peers this node has been connected to, for reconnecting after a restart;
* ``member-records.cbor``: the signed peer records of our groups' members (specs/chat.md §12);
* ``control.sock``: the running node's control socket (mode 0600), gone when it stops.
"""

from __future__ import annotations

import os
import stat
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
#: The data dir's mode: only its user may enter it.
DATA_DIR_MODE: Final = 0o700


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
    """Create ``path`` (mode 0700, whatever the umask) if needed and return it. An existing
    directory must be closed to group and others: it is not changed behind the user's back.

    Raises:
        DataDirError: it cannot be created, exists and is not a directory, or is open to group
            or others (the message names the ``chmod 700`` that fixes it).
    """
    try:
        path.mkdir(mode=DATA_DIR_MODE, parents=True)
    except FileExistsError:
        if not path.is_dir():
            raise DataDirError(f"data dir {path} exists and is not a directory") from None
        check_data_dir_mode(path)
        return path
    except OSError as exc:
        raise DataDirError(f"cannot create data dir {path}: {exc.strerror}") from exc
    try:
        path.chmod(DATA_DIR_MODE)  # ours: the umask may have taken bits away, never added
    except OSError as exc:
        raise DataDirError(f"cannot set the mode of data dir {path}: {exc.strerror}") from exc
    return path


def check_data_dir_mode(path: Path) -> None:
    """Refuse a data dir that group or others may enter, read or write.

    Raises:
        DataDirError: it is open to them (the message says how to fix it), or cannot be read.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise DataDirError(f"cannot use data dir {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise DataDirError(
            f"data dir {path} is open to other users (mode {mode:03o}); "
            f"fix it with: chmod 700 {path}"
        )


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
