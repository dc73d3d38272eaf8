"""The channels a notification entry becomes, behind one small interface: ``send`` a message
within a retry budget, and a ``target`` safe to log (a webhook URL is a credential)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pitcrew.config import NotificationConfig
from pitcrew.notify.discord import DiscordWebhook
from pitcrew.notify.email import EmailTopic
from pitcrew.notify.http import HttpDelivery, RetryBudget
from pitcrew.notify.message import Message
from pitcrew.notify.slack import SlackBot, SlackWebhook
from pitcrew.notify.teams import TeamsWebhook


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
        return SlackWebhook(entry, http) if entry.webhook_url else SlackBot(entry, http)
    if entry.type == "discord":
        return DiscordWebhook(entry, http)
    if entry.type == "teams":
        return TeamsWebhook(entry, http)
    return EmailTopic(entry, sns) if sns is not None else EmailTopic(entry)
