"""What ``channels`` tells the rooms above it. Sent after the ledger change commits."""

from __future__ import annotations

from django.dispatch import Signal

# message, old, new
delivery_status_changed = Signal()
# kind, address, reason ("invalid_address", "opted_out", "unregistered", "hard_bounce",
# "complaint"), detail (the provider's words), message (may be None for an inbound STOP)
address_dead = Signal()
