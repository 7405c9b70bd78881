"""Circuit relay v2, sans-IO: messages, vouchers, the relay's policy, the client's book.

Normative text: ``specs/relay.md``. The Trio service is ``p2pchat.net.relay``.
"""

from __future__ import annotations

from .messages import HOP_PROTOCOL as HOP_PROTOCOL
from .messages import STOP_PROTOCOL as STOP_PROTOCOL
from .messages import HopMessage as HopMessage
from .messages import HopType as HopType
from .messages import Limit as Limit
from .messages import MessageReader as MessageReader
from .messages import Peer as Peer
from .messages import Reservation as Reservation
from .messages import Status as Status
from .messages import StopMessage as StopMessage
from .messages import StopType as StopType
from .messages import decode_hop as decode_hop
from .messages import decode_stop as decode_stop
from .messages import frame as frame
from .state import Circuit as Circuit
from .state import RelayLimits as RelayLimits
from .state import RelayState as RelayState
from .state import ReservationBook as ReservationBook
from .state import circuit_addr as circuit_addr
from .state import is_circuit as is_circuit
from .state import parse_circuit as parse_circuit
from .voucher import ReservationVoucher as ReservationVoucher
from .voucher import open_voucher as open_voucher
