"""The ``p2pchat`` command (also ``python -m p2pchat``); normative text: specs/cli.md.

``p2pchat node`` runs a node until SIGINT/SIGTERM; the other commands act on it through its
control socket (specs/control.md), except ``init``, ``id``, ``demo`` and a ``ping`` with no node
running, which work alone. One module per group of commands:

* :mod:`~p2pchat.cli.entry`: the parser and the dispatch (the entry point, :func:`main`);
* :mod:`~p2pchat.cli.args`: argument types; :mod:`~p2pchat.cli.render`: output;
  :mod:`~p2pchat.cli.common`: what the commands share;
* :mod:`~p2pchat.cli.local`: ``init``, ``id``; :mod:`~p2pchat.cli.node`: ``node``, ``demo``;
* :mod:`~p2pchat.cli.control`: ``status``, ``stop``, ``peers``, ``connect``;
  :mod:`~p2pchat.cli.groups`: ``group ...``; :mod:`~p2pchat.cli.messages`: ``send``, ``history``,
  ``get``; :mod:`~p2pchat.cli.chat`: the interactive ``chat``;
* :mod:`~p2pchat.cli.net`: ``ping``, ``perf``;
* :mod:`~p2pchat.cli.dev`: ``plugins``, ``query``, ``stream`` (for developers).

Importing this package loads only the parser: a command's module, and the layers it needs, load
when it runs, so the commands that talk to a running node start without the network stack.
"""

from __future__ import annotations

from .entry import main as main

__all__ = ["main"]
