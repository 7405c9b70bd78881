"""The commands that work on the data dir alone: ``init`` and ``id``."""

from __future__ import annotations

import argparse
from typing import Final

from ..app.control_protocol import NodeNotRunningError
from ..app.datadir import config_path, ensure_data_dir, load_or_create_identity
from .common import Command, call, data_dir
from .render import print_json


def cmd_init(args: argparse.Namespace) -> int:
    """Create the data dir, the identity and a commented config file.

    Raises:
        DataDirError, KeyFileError, ConfigError: the data dir or a file cannot be used.
    """
    from ..app.config import write_config_template

    directory = ensure_data_dir(data_dir(args))
    path = args.config if args.config is not None else config_path(directory)
    existed = (directory / "identity.key").exists()
    pair = load_or_create_identity(directory)
    write_config_template(path, overwrite=args.force)
    flag = "" if args.data_dir is None else f" --data-dir {args.data_dir}"
    print(f"data dir: {directory}")
    print(f"config:   {path}")
    print(f"peer id:  {pair.peer_id}{' (existing identity)' if existed else ''}")
    print(f"start the node with: p2pchat{flag} node")
    return 0


def cmd_id(args: argparse.Namespace) -> int:
    """Print the peer ID (with ``--json``, the running node's addresses too).

    Raises:
        DataDirError, KeyFileError: the identity cannot be read or made.
    """
    peer = load_or_create_identity(data_dir(args)).peer_id
    if args.json:
        addrs: list[str] = []
        try:
            addrs = list(call(args, "status")["addrs"])
        except NodeNotRunningError:
            pass
        print_json({"peer_id": str(peer), "cid": peer.to_cid(), "addrs": addrs})
    else:
        print(peer)
    return 0


COMMANDS: Final[dict[str, Command]] = {"init": cmd_init, "id": cmd_id}
