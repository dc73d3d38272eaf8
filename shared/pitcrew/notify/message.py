"""The channel-neutral message a domain event becomes, and the two text tools every channel
renderer shares: ``clip`` (truncate to a limit, pointing at the full text) and ``safe_url``.

A ``Message`` is built once per event (``pitcrew.notify.compose``) and rendered per channel
(Slack, Discord, Teams, email), each within its own limits. ``Message.redacted()`` is the copy
that leaves pitcrew: every text in it has passed ``pitcrew.observability.redact``.
"""

from __future__ import annotations

import dataclasses
import re
from enum import StrEnum
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pitcrew.config import Value
from pitcrew.observability import REDACTED, redact
from pitcrew.records import frozen

ELLIPSIS = "…"
# Query parameters that carry a credential in links people paste (presigned S3 URLs,
# dashboards with embedded tokens): their values never leave pitcrew.
_CREDENTIAL_PARAMS = re.compile(
    r"(token|secret|password|passwd|pwd|key|signature|sig|auth|credential|x-amz-security-token)",
    re.IGNORECASE,
)

_URL_IN_TEXT = re.compile(r"\bhttps?://[^\s<>\"'`|]+")


class Outcome(StrEnum):
    """What the event means for the reader; channels colour by it."""

    SUCCESS = "success"  # green: done, healthy, resolved
    FAILURE = "failure"  # red: broken, failed, rolled back
    WARNING = "warning"  # amber: waiting for someone, or worth a look
    INFO = "info"  # neutral: something started


@frozen
class Fact:
    """A short labelled value (``Cluster: prod-eu``); ``url`` makes the value a link."""

    label: str
    value: str
    url: str | None = None


@frozen
class Section:
    """A titled block of longer text; ``code`` is shown monospaced (``language`` hints it)."""

    title: str
    text: str
    code: bool = False
    language: str = ""


@frozen
class Link:
    label: str
    url: str


@frozen
class Message:
    """One notification. ``title`` is one line; ``summary`` is the sentence to read first;
    ``url`` is where the whole story is (truncated text points there); ``footer`` says what
    sent it and when."""

    event: str
    title: str
    summary: str
    outcome: Outcome
    facts: tuple[Fact, ...] = ()
    sections: tuple[Section, ...] = ()
    links: tuple[Link, ...] = ()
    url: str | None = None
    footer: str = ""
    timestamp: str | None = None  # ISO 8601, the event's time

    def redacted(self) -> Message:
        """This message with every secret value and URL credential replaced by ``***``."""

        def text(value: str) -> str:
            return _URL_IN_TEXT.sub(lambda m: safe_url(m.group(0)), redact(value))

        def url(value: str | None) -> str | None:
            return safe_url(value) if value else value

        return dataclasses.replace(
            self,
            title=text(self.title),
            summary=text(self.summary),
            facts=tuple(Fact(text(f.label), text(f.value), url(f.url)) for f in self.facts),
            sections=tuple(
                dataclasses.replace(s, title=text(s.title), text=text(s.text))
                for s in self.sections
            ),
            links=tuple(Link(text(link.label), url(link.url) or "") for link in self.links),
            url=url(self.url),
            footer=text(self.footer),
        )


def safe_url(url: str) -> str:
    """``url`` with its password and any credential-looking query values replaced by ``***``
    (and every registered secret redacted)."""
    url = redact(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:  # user:password@host, or a bare token@host
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_CREDENTIAL_PARAMS.search(name) for name, _ in pairs):
            query = urlencode(
                [(n, REDACTED if _CREDENTIAL_PARAMS.search(n) else v) for n, v in pairs],
                safe="*",
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redacted_target(url: str) -> str:
    """Where a webhook points, for logs and the dead-letter queue: scheme, host and port only
    (the path of a webhook URL is its credential)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return REDACTED
    return f"{parts.scheme}://{host}{port}/{REDACTED}"


def webhook_target(url: Value) -> str:
    """How a configured webhook is named in logs and the dead-letter queue: its reference
    (``secret:pitcrew/slack`` names a secret, it is not one), or the redacted literal."""
    return url.reference or redacted_target(url.get())


def clip(text: str, limit: int, more: str = "") -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``…`` and ``more`` (a link to
    the full text, in the channel's syntax) when it had to be cut. Never longer than
    ``limit``, even when ``more`` does not fit (then it is left out)."""
    if len(text) <= limit:
        return text
    tail = ELLIPSIS + (f" {more}" if more else "")
    if len(tail) > limit // 2:  # a link longer than the text it follows is no help
        tail = ELLIPSIS
    if limit <= len(tail):
        return text[:limit]
    return text[: limit - len(tail)].rstrip() + tail


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return " ".join(text.split())


def fair_shares(lengths: list[int], total: int, cap: int) -> list[int]:
    """How many characters each of several texts may keep so that together they stay within
    ``total`` and each within ``cap``: short texts keep all they have, and what they leave
    is shared evenly among the long ones."""
    shares = [0] * len(lengths)
    left = max(total, 0)
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for position, index in enumerate(order):
        share = min(lengths[index], cap, left // (len(order) - position))
        shares[index] = share
        left -= share
    return shares
