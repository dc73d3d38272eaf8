"""The channels a notification entry becomes, behind one small interface: ``send`` a message
within a retry budget, and a ``target`` safe to log (a webhook URL is a credential).

Each channel's renderer is imported when an entry of its type is first built, so a function
configured for Slack alone never loads the Discord, Teams or SNS code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pitcrew.config import NotificationConfig
from pitcrew.notify.http import HttpDelivery, Judge, RetryBudget, judge_status
from pitcrew.notify.message import Message, webhook_target


class Channel(Protocol):
    kind: str  # the entry's type: slack, discord, teams, email
    target: str  # where it goes, redacted

    def send(self, message: Message, budget: RetryBudget) -> int:
        """Deliver ``message``; returns the attempts it took. Raises a ``PitcrewError``."""
        ...


class WebhookChannel:
    """An incoming webhook (Slack, Discord, Teams): the URL is the credential; the service's
    module renders the message and judges what a reply means."""

    def __init__(
        self,
        kind: str,
        entry: NotificationConfig,
        http: HttpDelivery,
        render: Callable[[Message], Any],
        judge: Judge = judge_status,
    ) -> None:
        assert entry.webhook_url is not None
        self.kind = kind
        self._url = entry.webhook_url
        self._http = http
        self._render = render
        self._judge = judge
        self.target = webhook_target(self._url)

    def send(self, message: Message, budget: RetryBudget) -> int:
        return self._http.post_json(
            self.kind, self._url.get(), self._render(message), judge=self._judge, budget=budget
        )


def channel_for(
    entry: NotificationConfig, http: HttpDelivery, sns: Callable[[str | None], Any] | None = None
) -> Channel:
    """The channel of one ``notifications`` entry. Nothing is resolved or sent yet."""
    if entry.type == "slack":
        from pitcrew.notify import slack

        if entry.webhook_url is None:
            return slack.SlackBot(entry, http)
        return WebhookChannel("slack", entry, http, slack.render)
    if entry.type == "discord":
        from pitcrew.notify import discord

        return WebhookChannel("discord", entry, http, discord.render, discord.judge)
    if entry.type == "teams":
        from pitcrew.notify import teams

        return WebhookChannel("teams", entry, http, teams.render, teams.judge)
    from pitcrew.notify.email import EmailTopic

    return EmailTopic(entry, sns) if sns is not None else EmailTopic(entry)
