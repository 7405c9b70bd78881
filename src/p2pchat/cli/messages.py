"""Messages on the running node: ``send``, ``history`` and ``get``, each one request on the
control socket (specs/control.md "Operations").

Every command here raises :class:`~p2pchat.app.control_protocol.ControlError` when no node runs
or the node refuses (its reason is the message), and :class:`~p2pchat.cli.common.UsageError` for
a mistake found before asking it.
"""

from __future__ import annotations

import argparse
import base64
import mimetypes
import sys
from pathlib import Path
from typing import Any, Final

from .common import EXIT_INTERRUPTED, EXIT_PENDING, Command, UsageError, call, call_stream
from .progress import ProgressBar
from .render import clean, print_json, size
from .sanitize import safe_file_name


def cmd_send(args: argparse.Namespace) -> int:
    """Send a message and wait for its ratification (unless ``--no-wait``)."""
    request: dict[str, Any]
    if args.file is not None:
        if args.text:
            raise UsageError("give either a text or --file, not both")
        return _send_file(args)
    else:
        if not args.text:
            raise UsageError("nothing to send: give a text, '-' to read stdin, or --file PATH")
        text = sys.stdin.read() if args.text == ["-"] else " ".join(args.text)
        if not text.strip():
            raise UsageError("nothing to send: the text is empty")
        request = {"type": "markdown" if args.markdown else "text", "text": text}
    try:
        answer = call(args, "send", group=args.group, wait=not args.no_wait, **request)
    except KeyboardInterrupt:
        print(
            "p2pchat: interrupted; the message stays queued on the node and goes through when "
            "the ratifiers answer (see: p2pchat outbox)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return _report_send(args, answer)


def _send_file(args: argparse.Namespace) -> int:
    """``send --file``: the node reads the file by its path (specs/control.md "Files")."""
    path = Path(args.file).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"cannot read {args.file}: no such file")
    bar = ProgressBar(f"sending {clean(path.name)}", enabled=not args.quiet)
    try:
        answer = call_stream(
            args, "send.file", bar.event, group=args.group, path=str(path), wait=not args.no_wait
        )
    except KeyboardInterrupt:
        bar.finish()
        print(
            "p2pchat: interrupted; if the file was already sealed, the message stays queued "
            "on the node (see: p2pchat outbox)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        bar.finish()
    return _report_send(args, answer)


def _report_send(args: argparse.Namespace, answer: dict[str, Any]) -> int:
    waited_in_vain = answer["status"] == "pending" and not args.no_wait
    if args.json:
        print_json(answer)
    elif answer["status"] == "ratified":
        print(f"ratified {answer['message_hash']}")
    else:
        print(f"pending {answer['message_hash']}")
        if not args.no_wait:
            print(
                "p2pchat: no quorum of ratifiers answered in time; the message stays queued "
                "on the node and goes through when they are reachable",
                file=sys.stderr,
            )
    return EXIT_PENDING if waited_in_vain else 0


def cmd_get(args: argparse.Namespace) -> int:
    """Save the content of a message (never overwriting a file).

    Raises:
        UsageError: the message has no content this node can read, or it cannot be written.
    """
    message = call(args, "message", group=args.group, hash=args.hash)
    if "artifact" in message:
        return _get_artifact(args, message)
    if "data_b64" in message:
        data = base64.b64decode(message["data_b64"])
    elif "text" in message:
        data = message["text"].encode()
    else:
        raise UsageError("that message has no content this node can read")
    if args.output is not None and str(args.output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    output = args.output
    if output is None:
        mime = message["mime"].split(";")[0].strip()
        ext = mimetypes.guess_extension(mime) or ".bin"
        output = Path(f"{message['message_hash'][:12]}{ext}")
    try:
        with open(output, "xb") as fh:
            fh.write(data)
    except FileExistsError:
        raise UsageError(f"{output} exists; choose another name with -o PATH") from None
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None
    print(f"saved {size(len(data))} ({clean(message['mime'])}) to {clean(output)}")
    return 0


def _get_artifact(args: argparse.Namespace, message: dict[str, Any]) -> int:
    """``get`` of a file: the node fetches what is missing and writes it to the path (or
    streams it, for ``-o -``); saved under the sender's file name by default."""
    artifact = message["artifact"]
    if artifact["name"] is None:
        raise UsageError("that message has no content this node can read")
    request = {"group": args.group, "hash": message["message_hash"]}
    if args.output is not None and str(args.output) == "-":

        def write(event: dict[str, Any]) -> None:
            if event.get("kind") == "data":
                sys.stdout.buffer.write(base64.b64decode(event["b64"]))

        call_stream(args, "save", write, **request)
        sys.stdout.flush()
        return 0
    output = args.output if args.output is not None else Path(safe_file_name(artifact["name"]))
    target = Path(output).expanduser().resolve()
    if target.exists():
        raise UsageError(f"{output} exists; choose another name with -o PATH")
    bar = ProgressBar(f"getting {clean(target.name)}", enabled=not args.quiet)
    try:
        answer = call_stream(args, "save", bar.event, path=str(target), **request)
    finally:
        bar.finish()
    print(f"saved {size(answer['size'])} ({clean(answer['mime'])}) to {clean(output)}")
    return 0


COMMANDS: Final[dict[str, Command]] = {
    "send": cmd_send,
    "get": cmd_get,
}
