"""Plug-ins in a running node (specs/plugins.md).

Theory of operation
-------------------
A plug-in is Python code with a ``setup(ctx)`` function (plain or ``async``), found by path, by
module name or through the ``p2pchat.plugins`` entry-point group
(:mod:`p2pchat.app.plugin_loader`). :func:`open_plugins` owns a nursery; each plug-in runs in a
task of it (:meth:`PluginManager._run`) that opens the plug-in's own nursery, calls ``setup``
with a :class:`PluginContext` on it, then waits until the plug-in is unloaded. Everything the
plug-in registers goes through its context, which records it, so that unloading withdraws
exactly that: its chat codes from the chat node's dispatcher, its stream protocols from the Host.

Failures stay inside the plug-in:

* ``setup`` raises, or takes longer than :data:`SETUP_TIMEOUT`, or a task the plug-in started in
  its nursery raises: the plug-in is *failed*, its registrations are withdrawn, its nursery is
  cancelled, the reason is logged (with the traceback) and shown by ``p2pchat plugins``; the
  plug-in stays listed so that ``p2pchat plugins reload NAME`` can try again after a fix.
* a code handler raises (anything but :class:`~p2pchat.chat.services.dispatch.Refusal` or a
  :class:`~p2pchat.errors.DecodeError`): the query is answered ``"internal error"``, the error is
  logged and counted; the plug-in keeps serving.
* a stream handler raises: the stream is reset, the error logged and counted.
* an ``on_message`` callback raises: logged and counted; the next message is delivered.

The node's own codes and protocols cannot be taken over: registering a code or protocol that
is served already fails (the plug-in's ``setup`` then fails and it is unloaded).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import trio

from ..aio import open_service_nursery
from ..chat.core.wire import Reason
from ..chat.services.dispatch import Handler, QueryContext, Refusal
from ..errors import DecodeError, P2PChatError
from ..identity import PeerID
from ..net.host import Host, StreamHandler
from .plugin_loader import (
    PluginLoadError,
    PluginSource,
    Setup,
    entry_point_sources,
    import_setup,
    parse_source,
)

if TYPE_CHECKING:
    from ..chat.node import ChatMessage, ChatNode
    from ..net.muxer import MuxedStream

__all__ = [
    "MAX_PLUGINS",
    "SETUP_TIMEOUT",
    "PluginContext",
    "PluginError",
    "PluginInfo",
    "PluginManager",
    "open_plugins",
]

logger = logging.getLogger(__name__)

#: specs/plugins.md "Limits": plug-ins listed at once, seconds ``setup`` may take.
MAX_PLUGINS: Final = 64
SETUP_TIMEOUT: Final = 10.0
#: Each plug-in logs under ``p2pchat.plugin.<name>``.
LOGGER_PREFIX: Final = "p2pchat.plugin."

_F = TypeVar("_F", bound=Callable[..., Any])
MessageCallback = Callable[["ChatMessage"], Awaitable[None]]


class PluginError(P2PChatError):
    """A plug-in operation cannot be done (no such plug-in, a name in use, too many)."""


@attrs.define(eq=False)
class _Plugin:
    source: PluginSource
    state: str = "loading"  # loading, running, failed
    error: str | None = None
    codes: dict[str, Handler] = attrs.Factory(dict)
    protocols: list[str] = attrs.Factory(list)
    handler_errors: int = 0
    last_handler_error: str | None = None
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    done: trio.Event = attrs.Factory(trio.Event)

    @property
    def name(self) -> str:
        return self.source.name


@attrs.frozen
class PluginInfo:
    """What ``p2pchat plugins`` shows of one plug-in (specs/plugins.md "Listing")."""

    name: str
    source: str
    #: ``running`` or ``failed``.
    state: str
    #: Why it failed (one line), or None.
    error: str | None
    codes: tuple[str, ...]
    protocols: tuple[str, ...]
    handler_errors: int
    last_handler_error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "state": self.state,
            "error": self.error,
            "codes": list(self.codes),
            "protocols": list(self.protocols),
            "handler_errors": self.handler_errors,
            "last_handler_error": self.last_handler_error,
        }


class PluginContext:
    """What a plug-in's ``setup(ctx)`` receives: its name, logger and nursery, the node's peer
    id, and the ways to serve codes and protocols, follow groups and send to them.

    The context is valid while the plug-in is loaded; after it is unloaded, registering fails.
    """

    def __init__(self, manager: PluginManager, plugin: _Plugin, nursery: trio.Nursery) -> None:
        self._manager = manager
        self._plugin = plugin
        #: The plug-in's name (its file's stem, module name or entry point name).
        self.name = plugin.name
        #: The node's peer id.
        self.peer_id: PeerID = manager.host.peer_id
        #: A logger named ``p2pchat.plugin.<name>``.
        self.log = logging.getLogger(LOGGER_PREFIX + plugin.name)
        #: The plug-in's own nursery: cancelled when it is unloaded. A task that raises here
        #: fails (and unloads) the plug-in, never the node.
        self.nursery = nursery
        #: The node's chat and Host, for what the context does not offer (registering on them
        #: directly bypasses the bookkeeping that unloading relies on).
        self.chat: ChatNode = manager.chat
        self.host: Host = manager.host

    def _check_loaded(self) -> None:
        if self._plugin.state not in ("loading", "running") or self._plugin.done.is_set():
            raise PluginError(f"plug-in {self.name} is not loaded")

    # -- chat codes ------------------------------------------------------------------------------

    def register_code(self, code: str, handler: Handler) -> None:
        """Answer chat queries with ``code`` by ``handler`` (``async def handler(query, body) ->
        dict``, ``query`` a :class:`QueryContext`; raise :class:`Refusal` for a negative
        answer). Other exceptions answer ``"internal error"`` and are counted.

        Raises:
            ValueError: not a query code, or the code is served already.
            PluginError: the plug-in is no longer loaded.
        """
        self._check_loaded()
        plugin, manager = self._plugin, self._manager

        async def guarded(query: QueryContext, body: dict[str, Any]) -> dict[str, Any]:
            try:
                return await handler(query, body)
            except (Refusal, DecodeError):
                raise
            except Exception as exc:
                manager._handler_failed(plugin, f"code {code!r}", exc)
                raise Refusal(Reason.INTERNAL_ERROR) from None

        self.chat.dispatcher.register(code, guarded)
        plugin.codes[code] = guarded

    def code(self, code: str) -> Callable[[_F], _F]:
        """Decorator form of :meth:`register_code`."""

        def decorate(handler: _F) -> _F:
            self.register_code(code, handler)
            return handler

        return decorate

    # -- stream protocols -----------------------------------------------------------------------

    def register_protocol(self, protocol: str, handler: StreamHandler) -> None:
        """Serve ``protocol`` (a libp2p protocol id) with ``async def handler(stream)``; the
        stream is closed when it returns, reset if it raises (counted).

        Raises:
            ValueError: the id does not start with ``/``.
            HandlerExistsError: the protocol is served already.
            PluginError: the plug-in is no longer loaded.
        """
        self._check_loaded()
        plugin, manager = self._plugin, self._manager

        async def guarded(stream: MuxedStream) -> None:
            try:
                await handler(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise
            except Exception as exc:
                manager._handler_failed(plugin, f"protocol {protocol}", exc)
                raise PluginError(f"plug-in {plugin.name} failed on {protocol}") from None

        self.host.set_stream_handler(protocol, guarded)
        plugin.protocols.append(protocol)

    def protocol(self, protocol: str) -> Callable[[_F], _F]:
        """Decorator form of :meth:`register_protocol`."""

        def decorate(handler: _F) -> _F:
            self.register_protocol(protocol, handler)
            return handler

        return decorate

    # -- groups ----------------------------------------------------------------------------------

    def group_id(self, group: bytes | str) -> bytes:
        """A group of this node from its id (bytes or hex), a unique hex prefix or its name.

        Raises:
            DaemonError: no such group here, or several match.
        """
        from .op_args import resolve_group

        if isinstance(group, bytes):
            return resolve_group(self.chat, group.hex())
        return resolve_group(self.chat, group)

    @asynccontextmanager
    async def subscribe(self, group: bytes | str) -> AsyncIterator[AsyncIterator[ChatMessage]]:
        """The group's ratified messages from now on (ours included), for the block.

        Raises:
            DaemonError: no such group here.
        """
        async with self.chat.subscribe(self.group_id(group)) as messages:
            yield _Ratified(messages)

    def on_message(self, group: bytes | str, callback: MessageCallback) -> None:
        """Call ``await callback(message)`` for each ratified message of the group from now on,
        in the plug-in's nursery. A callback that raises is logged and counted; the next
        message is delivered all the same.

        Raises:
            DaemonError: no such group here.
        """
        self._check_loaded()
        group_id = self.group_id(group)
        plugin, manager = self._plugin, self._manager

        async def follow() -> None:
            async with self.subscribe(group_id) as messages:
                async for message in messages:
                    try:
                        await callback(message)
                    except Exception as exc:
                        manager._handler_failed(plugin, "on_message", exc)

        self.nursery.start_soon(follow)

    async def send(
        self,
        group: bytes | str,
        content: bytes | str,
        *,
        message_type: str = "text",
        mime: str | None = None,
        wait: bool = True,
    ) -> bytes:
        """Send to a group as this node (``ChatNode.send``); the message hash.

        Raises:
            DaemonError: no such group here.
            NotAllowedError, PendingError, ChatError: as ``ChatNode.send``.
        """
        return await self.chat.send(
            self.group_id(group), content, message_type=message_type, mime=mime, wait=wait
        )


class _Ratified:
    """The ratified messages of a subscription channel."""

    def __init__(self, source: trio.MemoryReceiveChannel[ChatMessage]) -> None:
        self._source = source

    def __aiter__(self) -> _Ratified:
        return self

    async def __anext__(self) -> ChatMessage:
        while True:
            message = await self._source.__anext__()
            if message.ratified:
                return message


class PluginManager:
    """The plug-ins of a node. Made by :func:`open_plugins`."""

    def __init__(self, host: Host, chat: ChatNode, nursery: trio.Nursery) -> None:
        self.host = host
        self.chat = chat
        self._nursery = nursery
        self._plugins: dict[str, _Plugin] = {}

    def list(self) -> list[PluginInfo]:
        """Every plug-in loaded or failed, by name."""
        return [self._info(p) for _, p in sorted(self._plugins.items())]

    def info(self, name: str) -> PluginInfo:
        """One plug-in.

        Raises:
            PluginError: no plug-in of that name.
        """
        return self._info(self._get(name))

    async def load(self, spec: str | PluginSource) -> PluginInfo:
        """Load a plug-in (a path or module name, or a source) and run its ``setup``. A
        plug-in that fails is listed as failed, not raised: the result says so.

        Raises:
            PluginLoadError: ``spec`` names no possible plug-in.
            PluginError: a plug-in of that name is listed already, or :data:`MAX_PLUGINS` are.
        """
        source = parse_source(spec) if isinstance(spec, str) else spec
        if source.name in self._plugins:
            raise PluginError(
                f"a plug-in named {source.name!r} is loaded already "
                f"(reload it with: p2pchat plugins reload {source.name})"
            )
        if len(self._plugins) >= MAX_PLUGINS:
            raise PluginError(f"{MAX_PLUGINS} plug-ins are loaded already (the limit)")
        plugin = _Plugin(source)
        self._plugins[source.name] = plugin
        await self._start(plugin, fresh=False)
        return self._info(plugin)

    async def reload(self, name: str) -> PluginInfo:
        """Unload a plug-in, import its code again and run its ``setup`` anew.

        Raises:
            PluginError: no plug-in of that name.
        """
        old = self._get(name)
        await self._stop(old)
        plugin = _Plugin(old.source)
        self._plugins[name] = plugin
        await self._start(plugin, fresh=True)
        return self._info(plugin)

    async def unload(self, name: str) -> None:
        """Withdraw a plug-in's codes and protocols, cancel its nursery, forget it.

        Raises:
            PluginError: no plug-in of that name.
        """
        plugin = self._get(name)
        await self._stop(plugin)
        if self._plugins.get(name) is plugin:
            del self._plugins[name]
        logger.info("plug-in %s unloaded", name)

    # -- internals -------------------------------------------------------------------------------

    def _get(self, name: str) -> _Plugin:
        plugin = self._plugins.get(name)
        if plugin is None:
            known = ", ".join(sorted(self._plugins)) or "none"
            raise PluginError(f"no plug-in named {name!r} (loaded: {known})")
        return plugin

    def _info(self, plugin: _Plugin) -> PluginInfo:
        return PluginInfo(
            name=plugin.name,
            source=plugin.source.describe(),
            state=plugin.state,
            error=plugin.error,
            codes=tuple(sorted(plugin.codes)),
            protocols=tuple(sorted(plugin.protocols)),
            handler_errors=plugin.handler_errors,
            last_handler_error=plugin.last_handler_error,
        )

    async def _start(self, plugin: _Plugin, *, fresh: bool) -> None:
        try:
            setup = import_setup(plugin.source, fresh=fresh)
        except PluginLoadError as exc:
            self._failed(plugin, str(exc), exc.__cause__)
            plugin.done.set()
            return
        await self._nursery.start(self._run, plugin, setup)

    async def _stop(self, plugin: _Plugin) -> None:
        plugin.scope.cancel()
        await plugin.done.wait()

    async def _run(
        self, plugin: _Plugin, setup: Setup, *, task_status: trio.TaskStatus[None]
    ) -> None:
        """The plug-in's task: its nursery, ``setup``, then wait until unloaded. Never raises
        (a failure marks the plug-in failed) except to pass on the manager's cancellation."""
        started = False
        try:
            with plugin.scope:
                async with trio.open_nursery() as nursery:
                    context = PluginContext(self, plugin, nursery)
                    with trio.fail_after(SETUP_TIMEOUT):
                        result = setup(context)
                        if inspect.isawaitable(result):
                            await result
                    plugin.state = "running"
                    logger.info(
                        "plug-in %s loaded (%s): codes %s, protocols %s",
                        plugin.name,
                        plugin.source.describe(),
                        sorted(plugin.codes) or "none",
                        sorted(plugin.protocols) or "none",
                    )
                    task_status.started()
                    started = True
                    await trio.sleep_forever()
        except BaseException as exc:
            error = _plugin_error(exc)
            if error is None:  # cancelled (the node stops), or KeyboardInterrupt and the like
                raise
            if isinstance(error, trio.TooSlowError) and not started:
                self._failed(plugin, f"setup took longer than {SETUP_TIMEOUT:g} s", None)
            else:
                where = "a task of it raised" if started else "setup raised"
                self._failed(plugin, f"{where} {_one_line(error)}", error)
        finally:
            self._withdraw(plugin)
            plugin.done.set()
            if not started:
                task_status.started()

    def _withdraw(self, plugin: _Plugin) -> None:
        for code, handler in plugin.codes.items():
            if self.chat.dispatcher.registered(code) is handler:
                self.chat.dispatcher.unregister(code)
        for protocol in plugin.protocols:
            self.host.remove_stream_handler(protocol)
        if plugin.state == "failed":
            plugin.codes.clear()
            plugin.protocols.clear()

    def _failed(self, plugin: _Plugin, reason: str, exc: BaseException | None) -> None:
        plugin.state = "failed"
        plugin.error = reason
        logging.getLogger(LOGGER_PREFIX + plugin.name).error(
            "plug-in %s failed and is unloaded: %s",
            plugin.name,
            reason,
            exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None,
        )

    def _handler_failed(self, plugin: _Plugin, where: str, exc: Exception) -> None:
        plugin.handler_errors += 1
        plugin.last_handler_error = f"{where}: {_one_line(exc)}"
        logging.getLogger(LOGGER_PREFIX + plugin.name).error(
            "plug-in %s: %s raised", plugin.name, where, exc_info=exc
        )


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _plugin_error(exc: BaseException) -> Exception | None:
    """The plug-in's own error in what its task raised: the first ``Exception``, even beside
    a cancellation (a task failing while the node stops); None when there is none, or when
    something that must go on up is there too (``KeyboardInterrupt``, ``SystemExit``)."""
    leaves = _leaves(exc)
    if any(not isinstance(e, Exception | trio.Cancelled) for e in leaves):
        return None
    errors = [e for e in leaves if isinstance(e, Exception)]
    return errors[0] if errors else None


def _one_line(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ").strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@asynccontextmanager
async def open_plugins(
    host: Host, chat: ChatNode, specs: tuple[str, ...] = (), *, entry_points: bool = False
) -> AsyncIterator[PluginManager]:
    """Load the installed plug-ins (``entry_points``) and then ``specs``, for the block; a
    plug-in that cannot load is logged and listed as failed, and the node goes on.

    Raises:
        PluginLoadError: a spec names no possible plug-in (a malformed name).
    """
    sources = entry_point_sources() if entry_points else []
    sources += [parse_source(spec) for spec in specs]
    async with open_service_nursery() as nursery:
        manager = PluginManager(host, chat, nursery)
        for source in sources:
            try:
                await manager.load(source)
            except PluginError as exc:
                logger.warning("plug-in %s not loaded: %s", source.name, exc)
        yield manager
