"""When the flows beat task last ran: the orders room's Redis heartbeat, under our name."""

from __future__ import annotations

from orders.heartbeat import last_tick, record_tick

__all__ = ["last_tick", "record_tick"]
