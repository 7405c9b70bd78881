"""Trio drivers of the libp2p stack: transports, the secure channel, the muxer, the Host."""

from __future__ import annotations

from .host import DialError as DialError
from .host import HandlerExistsError as HandlerExistsError
from .host import Host as Host
from .host import HostConfig as HostConfig
from .host import StreamHandler as StreamHandler
from .host import StreamOpenError as StreamOpenError
from .host import open_host as open_host
from .muxer import MuxedStream as MuxedStream
from .ping import open_ping as open_ping
