"""The one ``NEED_DATA`` sentinel every sans-IO core returns when it must read more bytes."""

from __future__ import annotations

import enum
from typing import Final


class NeedData(enum.Enum):
    """Type of the :data:`NEED_DATA` sentinel."""

    NEED_DATA = "NEED_DATA"


#: Returned by a core's ``next_event()`` when no event can be produced before more bytes arrive.
NEED_DATA: Final = NeedData.NEED_DATA
