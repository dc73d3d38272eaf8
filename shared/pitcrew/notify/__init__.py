"""Notifications: every domain event on the ``pitcrew`` bus, sent to the ``notifications``
entries that want it (Slack, Discord, Microsoft Teams, email through SNS), one readable
message per event within each channel's limits.

``dispatch`` is what the ``notify`` function calls (``notifier``). The parts: ``routing``
(which entries want an event), ``compose`` (the channel-neutral ``Message``), one renderer
per channel (``slack``, ``discord``, ``teams``, ``email``), ``http`` (the httpx wrapper with
retries) and ``deadletter`` (where permanent failures are kept).
"""

from pitcrew.notify.notifier import Delivery, DispatchReport, Notifier, dispatch
from pitcrew.notify.routing import BusEvent

__all__ = ["BusEvent", "Delivery", "DispatchReport", "Notifier", "dispatch"]
