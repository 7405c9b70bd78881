"""yamux stream multiplexer (``/yamux/1.0.0``) as a sans-IO core.

Normative text: ``specs/yamux.md`` (our reading of hashicorp/yamux ``spec.md`` and libp2p/specs
``yamux/README.md``; go-yamux and rust-yamux for the points those leave open). The driver is
``p2pchat.net.muxer``. No module here imports trio or reads a clock.

Layout, one concern per module:

* ``frame``: protocol constants, frame types and flags, the 12-byte header codec;
* ``events``: what ``receive_data`` returns; ``errors``: what the peer or the caller did wrong;
* ``streams``: the stream lifecycle, its one ``_TRANSITIONS`` table and the per-stream record;
* ``flow``: receive credit and window auto-tuning;
* ``output``: the bounded output queue, and packing queued frames into writes;
* ``parser``: cutting the input into headers and bodies, bodies grouped into events;
* ``config``: :class:`YamuxConfig` and the statistics snapshots;
* ``connection``: :class:`YamuxConnection`, which parses frames and applies all of the above.

Theory of operation
-------------------

A :class:`YamuxConnection` does no I/O, in the manner of h2. The driver feeds the bytes it reads
with ``receive_data(data)``, which parses every complete frame header at once and returns the
resulting events in order; it writes whatever ``data_to_send()`` returns. Local actions
(``open_stream``, ``send_data``, ``send_eof``, ``reset_stream``, ``accept_stream``,
``acknowledge_received``, ``ping``, ``go_away``) only queue frames; they produce no events for the
local side.

Receive path (``parser``). Data frame bodies are never reassembled across reads: the body bytes
of one stream that follow each other in one ``receive_data`` call (consecutive data frames with
no flags and nothing between them) become one :class:`DataReceived`, copied once, so a bulk
reader gets about one event per read rather than one per frame, and a 64 KiB frame split over
two reads yields two events. The driver may reuse its read buffer: nothing of it is kept. Only a
header split across reads is buffered (at most 11 bytes). The window is charged in full when the
header arrives, so an overrun is detected before any of its bytes are delivered. A FIN on a data
frame takes effect after its body.

Streams. Each stream has a lifecycle :class:`StreamState` driven by the one table ``_TRANSITIONS``
(``(state, StreamInput) -> state`` or an error, h2 style) and a separate :class:`Handshake` that
only decides the flags on our first frame: SYN for a stream we opened, ACK for one the peer opened.
The SYN rides on the stream's first frame; a stream with no frame of its own by the next
``data_to_send()`` gets a bare WindowUpdate(SYN) there, so opening a stream never waits for data.
The ACK is never implicit: it goes with the first frame we send on the stream, or with
``accept_stream()``. A stream leaves the table when both sides have sent FIN, or on RST from either
side; later frames for its id are dropped silently.

Flow control. Windows are per stream, 256 KiB at first. The application reports consumed bytes with
``acknowledge_received``; once the bytes we could grant reach half the stream's current maximum
window we send them in one WindowUpdate. Auto-tuning follows go-yamux: if that happens less than
``autotune_rtt_factor`` round trips after the previous update, the maximum window doubles, up to
``max_window`` (16 MiB). The core reads no clock: the driver passes ``now`` to
``acknowledge_received`` and reports round-trip times with ``record_rtt``.

Errors. Bytes from the peer never raise. A protocol violation queues GoAway(protocol error), appends
:class:`ConnectionTerminated` to the returned events and ends the connection: later input is ignored
and later local calls raise :class:`ConnectionClosedError`. API misuse raises a
:class:`~p2pchat.errors.LocalProtocolError` subclass and changes nothing.
"""

from __future__ import annotations

from .config import ConnectionStatistics as ConnectionStatistics
from .config import StreamStatistics as StreamStatistics
from .config import YamuxConfig as YamuxConfig
from .connection import YamuxConnection as YamuxConnection
from .errors import ConnectionClosedError as ConnectionClosedError
from .errors import StreamLimitError as StreamLimitError
from .errors import StreamStateError as StreamStateError
from .errors import YamuxProtocolError as YamuxProtocolError
from .events import ConnectionTerminated as ConnectionTerminated
from .events import DataReceived as DataReceived
from .events import GoAwayReceived as GoAwayReceived
from .events import PingReceived as PingReceived
from .events import PongReceived as PongReceived
from .events import StreamAcked as StreamAcked
from .events import StreamEnded as StreamEnded
from .events import StreamOpened as StreamOpened
from .events import StreamReset as StreamReset
from .events import WindowUpdated as WindowUpdated
from .events import YamuxEvent as YamuxEvent
from .frame import DEFAULT_MAX_FRAME_PAYLOAD as DEFAULT_MAX_FRAME_PAYLOAD
from .frame import DEFAULT_MAX_STREAMS as DEFAULT_MAX_STREAMS
from .frame import HEADER_SIZE as HEADER_SIZE
from .frame import INITIAL_WINDOW as INITIAL_WINDOW
from .frame import MAX_ACK_BACKLOG as MAX_ACK_BACKLOG
from .frame import MAX_CONTROL_BACKLOG as MAX_CONTROL_BACKLOG
from .frame import MAX_WINDOW as MAX_WINDOW
from .frame import PROTOCOL_ID as PROTOCOL_ID
from .frame import SESSION_ID as SESSION_ID
from .frame import YAMUX_VERSION as YAMUX_VERSION
from .frame import Flag as Flag
from .frame import FrameHeader as FrameHeader
from .frame import FrameType as FrameType
from .frame import GoAwayCode as GoAwayCode
from .frame import decode_header as decode_header
from .frame import encode_header as encode_header
from .streams import Handshake as Handshake
from .streams import StreamInput as StreamInput
from .streams import StreamState as StreamState
from .streams import next_stream_state as next_stream_state
