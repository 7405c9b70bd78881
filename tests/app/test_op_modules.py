"""Each module of control operations imports on its own (in a fresh interpreter, first): the
operation modules share their argument helpers through ``op_args`` instead of importing each
other, so no import order is needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = ("op_args", "operations", "group_ops", "file_ops", "profile_ops", "dev_operations")


@pytest.mark.parametrize("module", MODULES)
def test_an_operation_module_imports_first(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import p2pchat.app.{module}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
