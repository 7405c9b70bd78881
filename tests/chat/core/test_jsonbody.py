"""Query bodies in JSON (specs/plugins.md "Bodies in JSON"): the spec's vectors both ways, and
the refusals."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from p2pchat.chat.core import cbor
from p2pchat.chat.core.jsonbody import MAX_DEPTH, body_from_json, body_to_json
from p2pchat.errors import LocalProtocolError

SPEC = Path(__file__).resolve().parents[3] / "specs" / "plugins.md"

VECTORS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"group_id": {"$bytes": "AAE="}}, {"group_id": b"\x00\x01"}),
    ({"n": [1, -2, True, None, "x"]}, {"n": [1, -2, True, None, "x"]}),
    ({"m": {"$bytes": "", "other": 1}}, {"m": {"$bytes": "", "other": 1}}),
]


def test_the_vectors_are_the_specs() -> None:
    text = SPEC.read_text()
    section = text[text.index("## Bodies in JSON") : text.index("## The control-socket client")]
    rows = re.findall(r"^\| `(\{.*?\})` \|", section, flags=re.MULTILINE)
    assert [json.loads(row) for row in rows] == [json_value for json_value, _ in VECTORS]


@pytest.mark.parametrize(("json_value", "cbor_value"), VECTORS)
def test_a_body_goes_both_ways(json_value: dict[str, Any], cbor_value: dict[str, Any]) -> None:
    assert body_from_json(json_value) == cbor_value
    assert body_to_json(cbor_value) == json_value
    assert cbor.loads(cbor.dumps(body_from_json(json_value)), max_size=1 << 20) == cbor_value


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ([1], "a query body is a JSON object"),
        ({"x": {"$bytes": "not base64!"}}, "not standard Base64"),
        ({"x": {"$bytes": 5}}, "holds Base64 text"),
        ({"x": math.inf}, "whole number"),
        ({"x": 2.5}, "whole number"),
        ({"x": 2**64}, "out of range"),
    ],
)
def test_a_bad_body_is_refused(value: Any, error: str) -> None:
    with pytest.raises(LocalProtocolError, match=error):
        body_from_json(value)


def test_deep_nesting_is_refused() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH + 2):
        value = [value]
    with pytest.raises(LocalProtocolError, match="deeper"):
        body_from_json({"x": value})


def test_what_json_cannot_hold_is_shown_as_text() -> None:
    assert body_to_json({1: b"", "f": math.nan}) == {"1": {"$bytes": ""}, "f": "nan"}
