"""Email through an SNS topic: a ``Message`` as a plain-text subject and body, published with
the client from ``pitcrew.aws`` (in the topic's own region).

SNS takes a subject of fewer than 100 characters with no line breaks or control characters
(older documentation says ASCII only, so it is kept ASCII) and a body of at most 256 KB.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

from pitcrew.aws import aws_errors
from pitcrew.config import NotificationConfig
from pitcrew.notify.http import RetryBudget
from pitcrew.notify.message import Message, one_line

SUBJECT_MAX = 99
BODY_MAX_BYTES = 250_000  # SNS's 262,144 bytes, with room to spare
# Typographic characters pitcrew's messages use, spelled in ASCII.
_ASCII = {
    "\u2192": "->",  # rightwards arrow
    "\u2190": "<-",  # leftwards arrow
    "\u2014": "-",  # em dash
    "\u2013": "-",  # en dash
    "\u2026": "...",  # ellipsis
    "\u00d7": "x",  # multiplication sign
    "\u00b7": "-",  # middle dot
    "\u2022": "*",  # bullet
    "\u201c": '"',
    "\u201d": '"',
    "\u2018": "'",
    "\u2019": "'",
}


def subject(message: Message) -> str:
    """``[pitcrew] <title>``: one line of printable ASCII, under 100 characters."""
    text = one_line(f"[pitcrew] {message.title}")
    text = "".join(_ASCII.get(ch, ch) for ch in text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = "".join(ch for ch in text if ch.isprintable())
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - 3].rstrip() + "..."


def _underlined(title: str) -> str:
    return f"{title}\n{'-' * min(len(title), 72)}"


def body(message: Message) -> str:
    """The plain-text body: title, summary, facts, sections, links and footer."""
    parts = [message.title, message.summary]
    if message.facts:
        width = max(len(f.label) for f in message.facts) + 1
        parts.append(
            "\n".join(
                f"{(f.label + ':').ljust(width)} {f.value}"
                + (f" <{f.url}>" if f.url and f.url != f.value else "")
                for f in message.facts
            )
        )
    for section in message.sections:
        text = section.text
        if section.code:
            text = "\n".join(f"    {line}" for line in text.splitlines())
        parts.append(f"{_underlined(section.title)}\n{text}")
    if message.links:
        parts.append(
            _underlined("Links") + "\n" + "\n".join(f"{x.label}: {x.url}" for x in message.links)
        )
    footer = " · ".join(x for x in (message.footer, message.timestamp or "") if x)
    if footer:
        parts.append(f"-- \n{footer}")
    text = "\n\n".join(p for p in parts if p)
    if len(text.encode()) <= BODY_MAX_BYTES:
        return text
    tail = f"\n\n… (cut: the full message is at {message.url})" if message.url else "\n\n… (cut)"
    room = BODY_MAX_BYTES - len(tail.encode())
    return text.encode()[:room].decode(errors="ignore").rstrip() + tail


def render(message: Message) -> tuple[str, str]:
    """(subject, body) for SNS ``Publish``."""
    return subject(message), body(message)


def _sns_client(region: str | None) -> Any:
    from pitcrew.aws import client

    return client("sns", region)


class EmailTopic:
    """An SNS topic whose email subscribers get the message."""

    kind = "email"

    def __init__(
        self, entry: NotificationConfig, sns: Callable[[str | None], Any] = _sns_client
    ) -> None:
        assert entry.sns_topic_arn is not None
        self._topic = entry.sns_topic_arn
        self._sns = sns
        self.target = str(self._topic)

    def send(self, message: Message, budget: RetryBudget) -> int:
        # botocore's standard retry mode already retries throttling (pitcrew.aws.BOTO_CONFIG).
        arn = self._topic.get()
        parts = arn.split(":")
        region = parts[3] if len(parts) > 3 and parts[3] else None
        title, text = render(message)
        with aws_errors("sns"):
            self._sns(region).publish(TopicArn=arn, Subject=title, Message=text)
        return 1
