"""The runnable examples the README shows still run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "tools" / "examples"

pytestmark = pytest.mark.timeout(60)


def test_chat_group_example_ratifies_and_delivers() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "chat_group.py")],
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "bob received: 'hello from alice' (ratified: True)"
    assert lines[1].endswith(": hello from alice")
    assert lines[2].endswith(": **hi** from bob")
