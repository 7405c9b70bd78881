"""perf: the sans-IO core (vectors, Hypothesis) and our client against our server on loopback."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from p2pchat.identity import KeyPair
from p2pchat.net.host import Host, StreamOpenError, open_host
from p2pchat.net.muxer import MuxedStream
from p2pchat.net.perf import (
    PROTOCOL_ID,
    PerfError,
    PerfLimits,
    PerfProgress,
    PerfRefusedError,
    PerfResult,
    format_result,
    format_summary,
    install_perf,
    measure,
    progress_json,
    result_json,
    run_perf,
    summarize,
    summary_json,
    uninstall_perf,
)
from p2pchat.protocols import perf as core

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024

# -- the core ----------------------------------------------------------------------------------

# specs/perf.md "Vectors": (bytes asked for, header hex).
HEADER_VECTORS = [
    (0, "0000000000000000"),
    (1, "0000000000000001"),
    (10 * MIB, "0000000000a00000"),
    (2**32, "0000000100000000"),
    (2**64 - 1, "ffffffffffffffff"),
]


@pytest.mark.parametrize(("count", "hex_header"), HEADER_VECTORS)
def test_request_header_vectors(count: int, hex_header: str) -> None:
    assert core.encode_request(count).hex() == hex_header
    assert core.decode_request(bytes.fromhex(hex_header)) == count


@pytest.mark.parametrize("count", [-1, 2**64])
def test_request_out_of_range_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match="perf request"):
        core.encode_request(count)
    with pytest.raises(ValueError, match="perf request"):
        core.PerfRequester(count)


@pytest.mark.parametrize("size", [0, 1, 7, 9, 16])
def test_decode_request_wrong_length(size: int) -> None:
    with pytest.raises(DecodeError, match="not 8"):
        core.decode_request(bytes(size))


@settings(max_examples=300)
@given(st.binary(max_size=32))
def test_decode_request_arbitrary_bytes(data: bytes) -> None:
    try:
        value = core.decode_request(data)
    except DecodeError:
        assert len(data) != core.HEADER_SIZE
    else:
        assert core.encode_request(value) == data


def _drain(responder: core.PerfResponder) -> list[object]:
    events: list[object] = []
    while (event := responder.next_event()) is not core.NEED_DATA:
        events.append(event)
    return events


@pytest.mark.parametrize("split", range(0, 13))
def test_responder_header_split_anywhere(split: int) -> None:
    wire = core.encode_request(300) + b"abcd"
    responder = core.PerfResponder()
    responder.receive_data(wire[:split])
    first = _drain(responder)
    responder.receive_data(wire[split:])
    responder.receive_eof()
    assert first + _drain(responder) == [core.RequestReceived(300), core.UploadEnded(4)]
    assert responder.download_bytes == 300
    assert responder.upload_bytes == 4
    assert _drain(responder) == []  # nothing after the end


def test_responder_request_truncated() -> None:
    responder = core.PerfResponder()
    responder.receive_data(b"\x00\x01\x02")
    assert responder.next_event() is core.NEED_DATA
    responder.receive_eof()
    with pytest.raises(RemoteProtocolError) as info:
        responder.next_event()
    assert info.value.hint == "perf request truncated"


def test_responder_data_after_eof_is_local_error() -> None:
    responder = core.PerfResponder()
    responder.receive_eof()
    with pytest.raises(LocalProtocolError):
        responder.receive_data(b"x")


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=20), max_size=6))
def test_responder_arbitrary_chunks(chunks: list[bytes]) -> None:
    responder = core.PerfResponder()
    events: list[object] = []
    for chunk in chunks:
        responder.receive_data(chunk)
        events += _drain(responder)
    responder.receive_eof()
    wire = b"".join(chunks)
    if len(wire) < core.HEADER_SIZE:
        with pytest.raises(RemoteProtocolError, match="request bytes"):
            responder.next_event()
        return
    events += _drain(responder)
    assert events == [
        core.RequestReceived(core.decode_request(wire[:8])),
        core.UploadEnded(len(wire) - 8),
    ]


@pytest.mark.parametrize(
    ("asked", "sent", "hint"),
    [(5, 6, "perf excess data"), (5, 4, "perf short download"), (0, 1, "perf excess data")],
)
def test_requester_counts_the_download(asked: int, sent: int, hint: str) -> None:
    requester = core.PerfRequester(asked)
    assert requester.request == core.encode_request(asked)
    with pytest.raises(RemoteProtocolError) as info:  # noqa: PT012 (either call may raise)
        requester.receive_data(bytes(sent))
        requester.receive_eof()
    assert info.value.hint == hint
    assert not requester.complete


def test_requester_exact_download_completes() -> None:
    requester = core.PerfRequester(5)
    requester.receive_data(b"ab")
    requester.receive_data(b"cde")
    assert not requester.complete
    requester.receive_eof()
    assert requester.complete
    assert requester.received == 5
    with pytest.raises(LocalProtocolError):
        requester.receive_data(b"")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_download_bytes": -1},
        {"max_upload_bytes": -1},
        {"max_duration_s": 0},
        {"max_streams": 0},
    ],
)
def test_limits_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        PerfLimits(**kwargs)  # type: ignore[arg-type]


# -- hosts on loopback -------------------------------------------------------------------------


@asynccontextmanager
async def client_and_server(
    limits: PerfLimits | None = None, *, enable: bool = True
) -> AsyncIterator[tuple[Host, Host]]:
    async with open_host(KeyPair.generate()) as client, open_host(KeyPair.generate()) as server:
        if enable:
            install_perf(server, limits)
        yield client, server


@pytest.mark.parametrize(
    ("upload", "download"), [(3 * MIB + 5, 2 * MIB + 7), (0, 4 * MIB), (4 * MIB, 0), (0, 0)]
)
async def test_client_against_server(upload: int, download: int) -> None:
    async with client_and_server() as (client, server):
        result = await run_perf(client, server.addrs[0], upload, download)
    assert (result.upload_bytes, result.download_bytes) == (upload, download)
    assert not result.reused_connection
    for phase in (result.connect_s, result.negotiate_s, result.upload_s, result.download_s):
        assert phase >= 0
    parts = result.connect_s + result.negotiate_s + result.upload_s + result.download_s
    assert result.total_s == pytest.approx(parts)
    assert result.transfer_s == pytest.approx(result.upload_s + result.download_s)
    assert (result.upload_bytes_per_s is None) == (upload == 0)
    assert (result.download_bytes_per_s is None) == (download == 0)


async def test_measure_reuses_the_connection_or_dials_fresh() -> None:
    async with client_and_server() as (client, server):
        reused = await measure(client, server.addrs[0], upload=1, download=1, iterations=3)
        conn = client.connection(server.peer_id)
        fresh = await measure(
            client, server.peer_id, upload=1, download=1, iterations=2, fresh_connection=True
        )
        assert conn is not None
        assert conn.is_closed  # closed for the first fresh run
    assert [r.reused_connection for r in reused] == [False, True, True]
    assert [r.reused_connection for r in fresh] == [False, False]
    with pytest.raises(ValueError, match="iterations"):
        await measure(client, server.peer_id, upload=1, download=1, iterations=0)


async def test_progress_reports_add_up() -> None:
    reports: list[PerfProgress] = []
    async with client_and_server() as (client, server):
        await run_perf(
            client, server.addrs[0], MIB, 2 * MIB, progress=reports.append, progress_interval=0
        )
    assert sum(r.upload_bytes for r in reports) == MIB
    assert sum(r.download_bytes for r in reports) == 2 * MIB
    assert {r.phase for r in reports} == {"upload", "download"}
    assert progress_json(reports[0])["type"] == "intermediary"


async def test_not_installed_negotiation_fails() -> None:
    async with client_and_server(enable=False) as (client, server):
        assert PROTOCOL_ID not in server.protocols
        with pytest.raises(StreamOpenError):
            await run_perf(client, server.addrs[0], 1, 1)


async def test_uninstalled_negotiation_fails() -> None:
    async with client_and_server() as (client, server):
        await run_perf(client, server.addrs[0], 1, 1)
        uninstall_perf(server)
        with pytest.raises(StreamOpenError):
            await run_perf(client, server.addrs[0], 1, 1)


@pytest.mark.parametrize(
    ("limits", "upload", "download", "logged"),
    [
        (PerfLimits(max_download_bytes=MIB), 0, MIB + 1, "above the download limit"),
        (PerfLimits(max_upload_bytes=MIB), 4 * MIB, 0, "passed the upload limit"),
    ],
)
async def test_request_beyond_limits_is_refused(
    limits: PerfLimits, upload: int, download: int, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="p2pchat.net.perf")
    async with client_and_server(limits) as (client, server):
        with pytest.raises(PerfRefusedError, match=r"the server refused.*limit"):
            await run_perf(client, server.addrs[0], upload, download)
        # The limit is inclusive, and the connection survives the refusal.
        ok = await run_perf(client, server.addrs[0], min(upload, MIB), min(download, MIB))
        assert ok.reused_connection
    assert any(logged in r.getMessage() and "refused" in r.getMessage() for r in caplog.records)


async def _open_raw(client: Host, server: Host) -> MuxedStream:
    stream = await client.new_stream(server.addrs[0], [PROTOCOL_ID])
    assert stream.protocol == PROTOCOL_ID
    return stream


async def _read_to_end(stream: MuxedStream) -> None:
    while await stream.receive_some():
        pass


async def _expect_reset(stream: MuxedStream) -> None:
    with pytest.raises(trio.BrokenResourceError, match="reset"):
        await _read_to_end(stream)


async def test_duration_limit_resets_a_stalled_client(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="p2pchat.net.perf")
    async with client_and_server(PerfLimits(max_duration_s=0.2)) as (client, server):
        stream = await _open_raw(client, server)
        await stream.send_all(core.encode_request(10))  # and never an end of stream
        await _expect_reset(stream)
        await stream.aclose()
    assert any("duration limit" in r.getMessage() for r in caplog.records)


async def test_too_many_concurrent_streams_are_refused(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="p2pchat.net.perf")
    async with client_and_server(PerfLimits(max_streams=1)) as (client, server):
        busy = await _open_raw(client, server)
        await busy.send_all(core.encode_request(3))
        await trio.testing.wait_all_tasks_blocked()  # its handler runs, waiting for the upload
        with pytest.raises(PerfRefusedError):
            await run_perf(client, server.addrs[0], 0, 1)
        await busy.send_eof()  # the busy exchange still completes
        received = b""
        while chunk := await busy.receive_some():
            received += chunk
        assert received == bytes(3)
        await busy.aclose()
        await run_perf(client, server.addrs[0], 0, 1)  # and the slot is free again
    assert any("perf streams already running" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("garbage", [b"", b"\x00", b"\x00\x00\x00\x00\x00\x00\x01"])
async def test_truncated_request_is_reset(garbage: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="p2pchat.net.perf")
    async with client_and_server() as (client, server):
        stream = await _open_raw(client, server)
        if garbage:
            await stream.send_all(garbage)
        await stream.send_eof()
        await _expect_reset(stream)
        await stream.aclose()
        await run_perf(client, server.addrs[0], 10, 10)  # the server is still fine
    assert any("perf request truncated" in r.getMessage() for r in caplog.records)


# -- a misbehaving server ----------------------------------------------------------------------


async def _read_request(stream: MuxedStream) -> int:
    responder = core.PerfResponder()
    while not isinstance(event := responder.next_event(), core.UploadEnded):
        if event is core.NEED_DATA:
            data = await stream.receive_some()
            if data:
                responder.receive_data(data)
            else:
                responder.receive_eof()
    assert responder.download_bytes is not None
    return responder.download_bytes


async def _too_much(stream: MuxedStream) -> None:
    await stream.send_all(bytes(await _read_request(stream) + 1))
    await stream.send_eof()


async def _too_little(stream: MuxedStream) -> None:
    await stream.send_all(bytes(await _read_request(stream) - 1))
    await stream.send_eof()


async def _hang_up(stream: MuxedStream) -> None:
    await _read_request(stream)
    await stream.connection.aclose()


@pytest.mark.parametrize(
    ("handler", "message"),
    [(_too_much, "sent 101 bytes or more"), (_too_little, "99 of 100"), (_hang_up, "connection")],
)
async def test_client_reports_a_misbehaving_server(handler: object, message: str) -> None:
    async with client_and_server(enable=False) as (client, server):
        server.set_stream_handler(PROTOCOL_ID, handler)  # type: ignore[arg-type]
        with pytest.raises(PerfError, match=message) as info:
            await run_perf(client, server.addrs[0], 50, 100)
    assert type(info.value) is PerfError  # not a refusal


# -- output ------------------------------------------------------------------------------------

RESULT = PerfResult(
    upload_bytes=2 * MIB,
    download_bytes=0,
    connect_s=0.004,
    reused_connection=False,
    negotiate_s=0.001,
    upload_s=0.5,
    download_s=0.0,
    total_s=0.505,
)


def test_result_json_has_the_runner_fields() -> None:
    record = result_json(RESULT)
    assert {k: record[k] for k in ("type", "timeSeconds", "uploadBytes", "downloadBytes")} == {
        "type": "final",
        "timeSeconds": 0.505,
        "uploadBytes": 2 * MIB,
        "downloadBytes": 0,
    }
    assert record["uploadBitsPerSecond"] == 2 * MIB * 8 / 0.5
    assert record["downloadBitsPerSecond"] is None
    assert json.loads(json.dumps(record)) == record


def test_format_result_and_summary() -> None:
    assert format_result(RESULT) == (
        "upload 2.0 MiB in 0.500 s (4.0 MiB/s), download 0 B in 0.000 s;"
        " connect 4.0 ms, negotiate 1.0 ms, total 0.505 s"
    )
    slower = PerfResult(
        upload_bytes=2 * MIB,
        download_bytes=0,
        connect_s=0.0,
        reused_connection=True,
        negotiate_s=0.001,
        upload_s=1.0,
        download_s=0.0,
        total_s=1.001,
    )
    summary = summarize([RESULT, slower, slower])
    assert summary.iterations == 3
    assert summary.upload_s == 1.0
    assert summary.upload_bytes_per_s == 2 * MIB
    assert summary.download_bytes_per_s is None
    assert summary_json(summary)["medianUploadBitsPerSecond"] == 2 * MIB * 8
    assert format_summary(summary).startswith("3 runs, medians: upload 2.0 MiB in 1.000 s")
    with pytest.raises(ValueError, match="no perf results"):
        summarize([])
