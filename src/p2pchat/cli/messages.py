"""Messages on the running node: ``send`` and ``get``, each one request on the
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

from .common import EXIT_INTERRUPTED, EXIT_PENDING, Command, UsageError, call
from .render import clean, print_json, size


def file_request(path: Path) -> dict[str, Any]:
    """The ``send`` request for a file: its type and MIME type from its name, its content.

    Raises:
        UsageError: the file cannot be read, or is too large for a message.
    """
    from ..chat.core.crypto import MAX_PLAINTEXT

    try:
        length = path.stat().st_size
        if length > MAX_PLAINTEXT:
            raise UsageError(
                f"{path} is {size(length)}; a message holds at most {size(MAX_PLAINTEXT)} "
                "for now (larger artifacts come later)"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_PLAINTEXT:
        raise UsageError(f"{path} grew past {size(MAX_PLAINTEXT)} while being read")
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return {
        "type": "image" if mime.startswith("image/") else "file",
        "mime": mime,
        "data_b64": base64.b64encode(data).decode("ascii"),
    }


def cmd_send(args: argparse.Namespace) -> int:
    """Send a message and wait for its ratification (unless ``--no-wait``)."""
    request: dict[str, Any]
    if args.file is not None:
        if args.text:
            raise UsageError("give either a text or --file, not both")
        request = file_request(args.file)
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


COMMANDS: Final[dict[str, Command]] = {
    "send": cmd_send,
    "get": cmd_get,
}
