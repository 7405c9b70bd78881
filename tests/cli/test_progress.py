"""The progress bar of ``send --file`` and ``get``, and ``/file`` in ``chat``."""

from __future__ import annotations

import io
from pathlib import Path

from p2pchat.cli.chat_commands import Send, SendFile, parse_line, request_of
from p2pchat.cli.progress import ProgressBar, render
from p2pchat.cli.sanitize import safe_file_name


def test_render_shows_bytes_rate_and_time_left() -> None:
    line = render("sending a.bin", 1024 * 1024, 4 * 1024 * 1024, 2.0)
    assert line.startswith("sending a.bin [######..................]  25%")
    assert "1.0 MiB / 4.0 MiB" in line
    assert "512.0 KiB/s" in line
    assert line.endswith("0:06 left")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_is_drawn_on_a_terminal_only_and_not_when_quiet() -> None:
    for stream, enabled, drawn in (
        (_Tty(), True, True),
        (_Tty(), False, False),
        (io.StringIO(), True, False),
    ):
        bar = ProgressBar("x", enabled=enabled, stream=stream)
        bar.event({"kind": "progress", "done": 1, "total": 2})
        bar.event({"kind": "data"})
        bar.finish()
        assert (stream.getvalue() != "") is drawn
        if drawn:
            assert stream.getvalue().startswith("\rx [")
            assert stream.getvalue().endswith("\n")


def test_chat_line_file_sends_a_file_by_absolute_path(tmp_path: Path) -> None:
    action = parse_line(f"/file {tmp_path}/a.png")
    assert isinstance(action, SendFile)
    assert request_of(action) == ("send.file", {"path": f"{tmp_path}/a.png", "progress": False})
    assert parse_line("hello /file") == Send({"type": "text", "text": "hello /file"})


def test_a_senders_file_name_is_made_safe() -> None:
    assert safe_file_name("../../etc/passwd") == "passwd"
    assert safe_file_name("..\\x\\.bashrc") == "bashrc"
    assert safe_file_name("a\x1bb.txt") == "ab.txt"
    assert safe_file_name("..") == "artifact"
    assert len(safe_file_name("é" * 300).encode()) <= 255
