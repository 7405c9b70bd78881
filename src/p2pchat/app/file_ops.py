"""Files over the control socket (specs/control.md "Files"): ``send.file`` gives the node a path,
``save`` has the node write a message's content to a path, or stream it back in events.

The control socket stays small whatever the size: a path goes in, progress events
(``{"kind": "progress", "done", "total"}``, at most four a second) and one result come out; only
``save`` to stdout streams the content, one chunk (Base64) per event. The node reads and writes
the files itself, as the user running it: the paths must be absolute (the CLI resolves them).
``save`` writes to a temporary name beside the target and links it into place at the end, never
over an existing file, so a partial file never shows under the final name.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from ..chat.artifacts import ArtifactUnavailableError
from ..chat.node import ChatError, PendingError
from ..chat.store.chunks import BlobStoreError
from .control import Emit
from .op_args import MAX_MIME, DaemonError, find_message, group_arg, str_arg

if TYPE_CHECKING:
    from .daemon import Daemon

#: Seconds between two progress events.
PROGRESS_INTERVAL: Final = 0.25


def _path_arg(request: dict[str, Any], name: str) -> Path:
    path = Path(str_arg(request, name))
    if not path.is_absolute():
        raise DaemonError(f"{name} must be an absolute path")
    return path


@asynccontextmanager
async def _progress(emit: Emit) -> AsyncIterator[Callable[[int, int], None]]:
    """A progress callback whose latest figures are sent as events, at most every 0.25 s."""
    latest: list[tuple[int, int]] = []

    def report(done: int, total: int) -> None:
        latest[:] = [(done, total)]

    async def ticker() -> None:
        sent: tuple[int, int] | None = None
        while True:
            await trio.sleep(PROGRESS_INTERVAL)
            if latest and latest[0] != sent:
                sent = latest[0]
                await emit({"kind": "progress", "done": sent[0], "total": sent[1]})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        yield report
        nursery.cancel_scope.cancel()


async def _quiet(event: dict[str, Any]) -> None:
    """The emitter of a request that asked for no progress events."""


async def op_send_file(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    group_id = group_arg(node, request)
    path = _path_arg(request, "path")
    mime = request.get("mime")
    if mime is not None and (not isinstance(mime, str) or len(mime.encode()) > MAX_MIME):
        raise DaemonError(f"mime must be a MIME type of at most {MAX_MIME} bytes")
    wait = request.get("wait", True) is not False
    events = request.get("progress", True) is not False
    # Refusals are decided inside the progress reporter's nursery but raised outside it: raised
    # inside, they would leave it in an exception group, which the control socket answers as
    # "internal error".
    refusal: str | None = None
    async with _progress(emit if events else _quiet) as report:
        try:
            message_hash = await node.chat.send_file(
                group_id, path, mime=mime, wait=wait, progress=report
            )
        except PendingError as exc:
            return {"message_hash": exc.message_hash.hex(), "status": "pending"}
        except OSError as exc:
            refusal = f"the node cannot read {path}: {exc.strerror or exc}"
        except BlobStoreError as exc:
            refusal = f"not sent: {exc}"
    if refusal is not None:
        raise DaemonError(refusal)
    return {"message_hash": message_hash.hex(), "status": "ratified" if wait else "pending"}


async def op_save(node: Daemon, request: dict[str, Any], emit: Emit) -> dict[str, Any]:
    group_id = group_arg(node, request)
    message = await find_message(node, group_id, str_arg(request, "hash"))
    to_stdout = request.get("path") is None
    target = None if to_stdout else _path_arg(request, "path")
    info = message.artifact
    if info is None:
        if message.content is None:
            raise DaemonError("that message has no content this node can read")
        pieces = _one(message.content)
        size = len(message.content)
    else:
        size = info.size
        artifacts = node.chat.artifacts
        assert artifacts is not None  # the message has an artifact: the node keeps them

        async def watch() -> None:
            while True:
                await trio.sleep(PROGRESS_INTERVAL)
                done = artifacts.fetched.get(info.root)
                if done is not None:
                    await emit({"kind": "progress", "done": done, "total": size})

        refusal: str | None = None
        async with trio.open_nursery() as nursery:  # refusals raised outside it, as above
            nursery.start_soon(watch)
            try:
                pieces = await node.chat.open_artifact(group_id, message.message_hash)
            except (ArtifactUnavailableError, ChatError) as exc:
                refusal = str(exc)
            nursery.cancel_scope.cancel()
        if refusal is not None:
            raise DaemonError(refusal)
    if target is None:
        async for piece in pieces:
            await emit({"kind": "data", "b64": base64.b64encode(piece).decode("ascii")})
    else:
        await _write(target, pieces, size, emit)
    return {
        "path": None if target is None else str(target),
        "size": size,
        "mime": message.mime,
        "name": None if info is None else info.name,
    }


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _write(target: Path, pieces: AsyncIterator[bytes], size: int, emit: Emit) -> None:
    """Write ``pieces`` to a temporary file beside ``target``, then link it into place (never
    over an existing file).

    Raises:
        DaemonError: ``target`` exists, or cannot be written.
    """
    if await trio.to_thread.run_sync(target.exists):
        raise DaemonError(f"{target} exists; choose another name with -o PATH")
    temp = target.with_name(f".{target.name}.part-{secrets.token_hex(4)}")
    try:
        fh = await trio.to_thread.run_sync(lambda: open(temp, "xb"))  # noqa: SIM115
    except OSError as exc:
        raise DaemonError(f"cannot write {target}: {exc.strerror}") from None
    try:
        done = 0
        last = trio.current_time()
        try:
            async for piece in pieces:
                await trio.to_thread.run_sync(fh.write, piece)
                done += len(piece)
                if trio.current_time() - last >= PROGRESS_INTERVAL:
                    last = trio.current_time()
                    await emit({"kind": "progress", "done": done, "total": size})
            await trio.to_thread.run_sync(fh.flush)
            await trio.to_thread.run_sync(os.fsync, fh.fileno())
        finally:
            await trio.to_thread.run_sync(fh.close)
        try:
            await trio.to_thread.run_sync(os.link, temp, target)
        except FileExistsError:
            raise DaemonError(f"{target} exists; choose another name with -o PATH") from None
    except OSError as exc:
        raise DaemonError(f"cannot write {target}: {exc.strerror}") from None
    except ArtifactUnavailableError as exc:
        raise DaemonError(str(exc)) from None
    finally:
        temp.unlink(missing_ok=True)
