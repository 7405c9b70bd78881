"""Finding a plug-in's ``setup`` function: by path, by module name, or by entry point
(specs/plugins.md "Loading").

No trio here: importing is plain Python. A *source* names where a plug-in comes from and gives
it its name; :func:`import_setup` imports (or re-imports, for ``reload``) the code and returns
its ``setup``. Every failure is a :class:`PluginLoadError` whose message says what went wrong in
one line; the traceback of an exception raised by the plug-in's own code is kept as its cause.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Literal

import attrs

from ..errors import P2PChatError

#: The entry-point group installed packages declare their plug-ins in.
ENTRY_POINT_GROUP: Final = "p2pchat.plugins"
#: The longest plug-in name (it names a logger and appears in every listing).
MAX_NAME: Final = 64
#: The largest plug-in file loaded by path.
MAX_SOURCE: Final = 4 * 1024 * 1024
#: Modules of plug-ins loaded by path live under this prefix in ``sys.modules``.
PATH_MODULE_PREFIX: Final = "p2pchat_plugin_"

_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_MODULE_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

Kind = Literal["path", "module", "entry_point"]
#: A plug-in's entry: it receives the plug-in's context; it may be a coroutine function.
Setup = Callable[[Any], Any]


class PluginLoadError(P2PChatError):
    """A plug-in cannot be found or imported, or has no ``setup``; the message says why."""


@attrs.frozen
class PluginSource:
    """Where a plug-in comes from."""

    kind: Kind
    #: The file path, the module name, or the entry point's ``module[:attr]`` value.
    target: str
    #: The plug-in's name: the file's stem (the directory's name for a package directory), the
    #: module's dotted name, or the entry point's name.
    name: str

    def describe(self) -> str:
        """How ``p2pchat plugins`` shows where it comes from."""
        return {"path": "path", "module": "module", "entry_point": "entry point"}[
            self.kind
        ] + f" {self.target}"


def parse_source(text: str) -> PluginSource:
    """The source a ``--plugin`` value or a ``[plugins] load`` entry names: a path when it
    contains ``/`` or ends in ``.py``, else a module name (dotted).

    Raises:
        PluginLoadError: neither a usable path nor a module name.
    """
    text = text.strip()
    if "/" in text or text.endswith(".py"):
        path = Path(text).expanduser().resolve()
        name = path.parent.name if path.name == "__init__.py" else path.stem
        if path.is_dir():
            name = path.name
        return PluginSource("path", str(path), _check_name(name, text))
    if not _MODULE_RE.fullmatch(text):
        raise PluginLoadError(f"not a plug-in path or module name: {text!r}")
    return PluginSource("module", text, _check_name(text, text))


def _check_name(name: str, text: str) -> str:
    if not _NAME_RE.fullmatch(name) or len(name) > MAX_NAME:
        raise PluginLoadError(
            f"{text!r} gives the plug-in name {name!r}: a name is a letter or '_' then up to "
            f"{MAX_NAME - 1} letters, digits, '_', '.', '-'"
        )
    return name


def entry_point_sources() -> list[PluginSource]:
    """The plug-ins installed packages declare in the ``p2pchat.plugins`` group, by name
    (the first of a duplicated name wins)."""
    found: dict[str, PluginSource] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            name = _check_name(entry.name, entry.name)
        except PluginLoadError:
            continue
        found.setdefault(name, PluginSource("entry_point", entry.value, name))
    return [found[name] for name in sorted(found)]


def import_setup(source: PluginSource, *, fresh: bool) -> Setup:
    """The ``setup`` of the plug-in at ``source``. ``fresh`` imports its code again (a path is
    read again, a module reloaded) so that an edited plug-in is picked up.

    Raises:
        PluginLoadError: not found, it fails to import (the cause is the plug-in's exception),
            or it has no callable ``setup``.
    """
    if source.kind == "path":
        loaded: Any = _load_path(source)
    elif source.kind == "module":
        loaded = _load_module(source.target, fresh=fresh)
    else:
        module_name, _, attr = source.target.partition(":")
        loaded = _load_module(module_name.strip(), fresh=fresh)
        for part in filter(None, attr.strip().split(".")):
            loaded = getattr(loaded, part, None)
            if loaded is None:
                raise PluginLoadError(f"entry point {source.target!r} names nothing")
    setup = getattr(loaded, "setup", None) if isinstance(loaded, types.ModuleType) else loaded
    if not callable(setup):
        raise PluginLoadError(f"{source.describe()} has no setup(ctx) function")
    return setup  # type: ignore[no-any-return]


def _load_path(source: PluginSource) -> types.ModuleType:
    """Execute the file (or a package directory's ``__init__.py``) as a new module, read from
    its source every time (no bytecode cache, which could be stale right after an edit)."""
    path = Path(source.target)
    if path.is_dir():
        path = path / "__init__.py"
    try:
        with open(path, "rb") as fh:
            code_bytes = fh.read(MAX_SOURCE + 1)
    except OSError as exc:
        raise PluginLoadError(f"cannot read plug-in {path}: {exc.strerror}") from None
    if len(code_bytes) > MAX_SOURCE:
        raise PluginLoadError(f"plug-in {path} is larger than {MAX_SOURCE} bytes")
    module_name = PATH_MODULE_PREFIX + re.sub(r"\W", "_", source.name)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None:
        raise PluginLoadError(f"cannot load plug-in {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        code = compile(code_bytes, str(path), "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        raise PluginLoadError(f"plug-in {path} does not compile: {exc}") from exc
    sys.modules[module_name] = module  # dataclasses and the like look their module up there
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PluginLoadError(f"plug-in {path} raised on import: {_one_line(exc)}") from exc
    return module


def _load_module(name: str, *, fresh: bool) -> types.ModuleType:
    try:
        module = sys.modules.get(name)
        if module is not None and fresh:
            importlib.invalidate_caches()
            return importlib.reload(module)
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise PluginLoadError(f"no module named {name!r} (is it installed?)") from None
        raise PluginLoadError(f"module {name!r} raised on import: {_one_line(exc)}") from exc
    except Exception as exc:
        raise PluginLoadError(f"module {name!r} raised on import: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ").strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
