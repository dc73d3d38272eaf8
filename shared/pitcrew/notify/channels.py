"""The channels a notification entry becomes, behind one small interface: ``send`` a message
within a retry budget, and a ``target`` safe to log (a webhook URL is a credential).

Each channel's renderer is imported when an entry of its type is first built, so a function
configured for Slack alone never loads the Discord, Teams or SNS code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pitcrew.config import NotificationConfig
from pitcrew.notify.http import HttpDelivery, RetryBudget
from pitcrew.notify.message import Message


class Channel(Protocol):
    kind: str  # the entry's type: slack, discord, teams, email
    target: str  # where it goes, redacted

    def send(self, message: Message, budget: RetryBudget) -> int:
        """Deliver ``message``; returns the attempts it took. Raises a ``PitcrewError``."""
        ...


def channel_for(
    entry: NotificationConfig, http: HttpDelivery, sns: Callable[[str | None], Any] | None = None
) -> Channel:
    """The channel of one ``notifications`` entry. Nothing is resolved or sent yet."""
    if entry.type == "slack":
        from pitcrew.notify.slack import SlackBot, SlackWebhook

        return SlackWebhook(entry, http) if entry.webhook_url else SlackBot(entry, http)
    if entry.type == "discord":
        from pitcrew.notify.discord import DiscordWebhook

        return DiscordWebhook(entry, http)
    if entry.type == "teams":
        from pitcrew.notify.teams import TeamsWebhook

        return TeamsWebhook(entry, http)
    from pitcrew.notify.email import EmailTopic

    return EmailTopic(entry, sns) if sns is not None else EmailTopic(entry)
