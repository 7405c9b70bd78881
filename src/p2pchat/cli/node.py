"""The commands that run nodes in this process: ``p2pchat node`` (until SIGINT/SIGTERM or a
``stop`` request) and ``p2pchat demo`` (:mod:`p2pchat.app.demo`). Here the whole stack loads."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import TYPE_CHECKING, Any, Final

from .common import Command, CommandError, data_dir, run_trio, start_logging

if TYPE_CHECKING:
    from ..app.config import Config
    from ..app.daemon import NodeOptions

logger = logging.getLogger(__name__)

#: Added to "address already in use": the way out.
PORT_IN_USE_HINT: Final = (
    " (another program, or another p2pchat node, uses that port: choose another with "
    "--listen, e.g. --listen /ip4/127.0.0.1/tcp/0 for any free port)"
)


def _config(args: argparse.Namespace) -> Config:
    from ..app.config import load_config
    from ..app.datadir import config_path

    if args.config is not None:
        return load_config(args.config, required=True)
    return load_config(config_path(data_dir(args)))


def _node_options(args: argparse.Namespace, config: Config) -> NodeOptions:
    """The configuration file's options with the command line's overrides."""
    import attrs

    from ..app.daemon import NodeOptions

    options = NodeOptions.from_config(data_dir(args), config)
    changes: dict[str, Any] = {}
    if args.listen:
        changes["listen"] = tuple(args.listen)
    if args.bootstrap:
        changes["bootstrap"] = tuple(args.bootstrap)
    if args.mdns is not None:
        changes["mdns"] = args.mdns
    if args.mdns_interface:
        changes["mdns_interface"] = args.mdns_interface
    if args.enable_perf:
        changes["perf"] = True
    if args.plugin:
        changes["plugins"] = (*options.plugins, *args.plugin)
    return attrs.evolve(options, **changes)


async def _run_node(options: NodeOptions) -> None:
    import trio

    from ..app.daemon import open_daemon

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_daemon(options) as daemon:
            for addr in daemon.host.addrs:
                print(addr, flush=True)
            logger.info("node %s running on %s", daemon.peer_id, options.data_dir)
            async with trio.open_nursery() as nursery:

                async def on_signal() -> None:
                    async for signum in signals:
                        logger.info("received %s, shutting down", signal.Signals(signum).name)
                        break
                    nursery.cancel_scope.cancel()

                async def on_stop() -> None:
                    await daemon.stop_requested.wait()
                    logger.info("stop requested, shutting down")
                    nursery.cancel_scope.cancel()

                nursery.start_soon(on_signal)
                nursery.start_soon(on_stop)


def cmd_node(args: argparse.Namespace) -> int:
    """Run a node until SIGINT, SIGTERM or a ``stop`` request; print its addresses first.

    Raises:
        ConfigError: the configuration file is wrong.
        PluginLoadError: a plug-in is named by neither a path nor a module name.
        CommandError: a listen port is in use (with the way out).
        P2PChatError: the node cannot start (data dir in use, address not bindable, ...).
    """
    from ..net.tcp import TransportError

    config = _config(args)
    start_logging(args, level=config.log_level, fmt=config.log_format)
    options = _node_options(args, config)
    from ..app.plugin_loader import parse_source

    for spec in options.plugins:  # a malformed one stops the node before it binds a port
        parse_source(spec)
    try:
        run_trio(_run_node, options)
    except TransportError as exc:
        if "address already in use" not in str(exc):
            raise
        raise CommandError(f"{exc}{PORT_IN_USE_HINT}") from exc
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the three-node demo (specs/cli.md "Demo").

    Raises:
        CommandError: it did not finish within its time limit.
    """
    from ..app.demo import run_demo

    start_logging(args)
    run_trio(run_demo)
    return 0


COMMANDS: Final[dict[str, Command]] = {"node": cmd_node, "demo": cmd_demo}
