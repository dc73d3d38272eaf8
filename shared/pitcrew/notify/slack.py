"""Slack: a ``Message`` as Block Kit (header, section and context blocks, with a top-level
``text`` fallback for notifications), sent through an incoming webhook or by a bot token with
``chat.postMessage``.

Limits kept (Slack's Block Kit reference): header text 150 characters, section text 3,000,
section fields 10 of 2,000 each, context elements 10, blocks 50. Slack also refuses messages
whose blocks carry much more than about 12,000 characters in all (``msg_blocks_too_long``),
so facts share ``FACTS_TEXT_BUDGET`` and section texts what is left of ``BLOCK_TEXT_BUDGET``.
Text over a limit is cut with a link to the full message (``Message.url``) when there is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pitcrew.config import NotificationConfig
from pitcrew.notify.http import (
    DELIVERED,
    HttpDelivery,
    Reply,
    RetryBudget,
    Verdict,
    judge_status,
    parse_retry_after,
)
from pitcrew.notify.message import (
    ELLIPSIS,
    Message,
    Outcome,
    clip,
    fair_shares,
)

HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
FIELDS_PER_SECTION = 10
MAX_FACTS = 2 * FIELDS_PER_SECTION
CONTEXT_ELEMENTS_MAX = 10
BLOCKS_MAX = 50
FALLBACK_TEXT_MAX = 3000
BLOCK_TEXT_BUDGET = 12_000
FACTS_TEXT_BUDGET = 4_000  # facts are short; a huge one must not crowd out the story
LINKS_TEXT_MAX = 1_000
LINK_LABEL_MAX = 80
FOOTER_MAX = 300

EMOJI: Mapping[Outcome, str] = {
    Outcome.SUCCESS: ":large_green_circle:",
    Outcome.FAILURE: ":red_circle:",
    Outcome.WARNING: ":large_orange_circle:",
    Outcome.INFO: ":large_blue_circle:",
}
# chat.postMessage errors worth retrying (Slack Web API, "chat.postMessage": Errors).
TRANSIENT_API_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_URL_ESCAPES = {"|": "%7C", "<": "%3C", ">": "%3E", " ": "%20"}


def escape(text: str) -> str:
    """Text for mrkdwn: Slack's three control characters escaped."""
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def link(url: str, label: str) -> str:
    return f"<{''.join(_URL_ESCAPES.get(ch, ch) for ch in url)}|{escape(label)}>"


def fit(raw: str, limit: int, more: str = "") -> str:
    """``raw`` escaped for mrkdwn in at most ``limit`` characters; when it had to be cut, it
    ends in ``…`` and ``more`` (mrkdwn already). An escape is never cut in half."""
    escaped = escape(raw)
    if len(escaped) <= limit:
        return escaped
    tail = ELLIPSIS + (f" {more}" if more else "")
    if len(tail) > limit // 2:
        tail = ELLIPSIS
    room = max(limit - len(tail), 0)
    pieces: list[str] = []
    used = 0
    for ch in raw:
        piece = _ESCAPES.get(ch, ch)
        if used + len(piece) > room:
            break
        pieces.append(piece)
        used += len(piece)
    return ("".join(pieces).rstrip() + tail)[:limit]


def _text(kind: str, text: str) -> dict[str, Any]:
    return {"type": kind, "text": text} | ({"emoji": True} if kind == "plain_text" else {})


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _text("mrkdwn", text)}


def _timestamp(iso: str | None) -> str:
    """A Slack date token (shown in the reader's time zone), falling back to the text."""
    if not iso:
        return ""
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return escape(iso)
    if when.tzinfo is None:
        return escape(iso)
    return f"<!date^{int(when.timestamp())}^{{date_short_pretty}} {{time}}|{escape(iso)}>"


def render(message: Message) -> dict[str, Any]:
    """The Block Kit message (``text`` + ``blocks``), within Slack's limits."""
    more = link(message.url, "full message") if message.url else ""
    header = clip(f"{EMOJI[message.outcome]} {message.title}", HEADER_MAX)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _text("plain_text", header)},
        _section(fit(message.summary, SECTION_TEXT_MAX, more)),
    ]
    blocks += _fact_sections(message)
    context = _context(message)
    used = sum(_block_chars(b) for b in [*blocks, context])
    heads = [f"*{fit(s.title, 200)}*\n" for s in message.sections]
    overhead = [
        len(h) + (8 if s.code else 0) + len(more) + 3
        for h, s in zip(heads, message.sections, strict=True)
    ]
    shares = fair_shares(
        [len(escape(s.text)) for s in message.sections],
        BLOCK_TEXT_BUDGET - used - sum(overhead),
        SECTION_TEXT_MAX - max(overhead, default=0),
    )
    for head, section, share in zip(heads, message.sections, shares, strict=True):
        body = fit(section.text, share)
        cut = len(body) < len(escape(section.text))
        if section.code:
            text = f"{head}```\n{body}\n```" + (f"\n{ELLIPSIS} {more}" if cut and more else "")
        else:
            text = head + (fit(section.text, share, more) if cut else body)
        blocks.append(_section(text))
    if context["elements"]:
        blocks.append(context)
    if len(blocks) > BLOCKS_MAX:
        blocks = [*blocks[: BLOCKS_MAX - 1], _section(f"{ELLIPSIS} {more}".strip())]
    return {
        "text": fit(f"{message.title}: {message.summary}", FALLBACK_TEXT_MAX),
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }


def _fact_sections(message: Message) -> list[dict[str, Any]]:
    """Facts as section fields, ten to a section, sharing ``FACTS_TEXT_BUDGET``."""
    facts = message.facts[:MAX_FACTS]
    labels = [f"*{fit(fact.label, 100)}*\n" for fact in facts]
    values = [link(f.url, f.value) if f.url else escape(f.value) for f in facts]
    shares = fair_shares(
        [len(v) for v in values],
        FACTS_TEXT_BUDGET - sum(len(label) for label in labels),
        FIELD_TEXT_MAX - 102,
    )
    sections = []
    for start in range(0, len(facts), FIELDS_PER_SECTION):
        fields = []
        for index in range(start, min(start + FIELDS_PER_SECTION, len(facts))):
            value = values[index]
            if len(value) > shares[index]:
                value = fit(facts[index].value, shares[index])
            fields.append(_text("mrkdwn", labels[index] + (value or "-")))
        sections.append({"type": "section", "fields": fields})
    return sections


def _context(message: Message) -> dict[str, Any]:
    """The links, then what sent the message and when, in small print."""
    elements = []
    links: list[str] = []
    for x in message.links:
        candidate = link(x.url, clip(x.label, LINK_LABEL_MAX))
        if sum(len(t) + 5 for t in [*links, candidate]) > LINKS_TEXT_MAX:
            break
        links.append(candidate)
    if links:
        elements.append(_text("mrkdwn", "  ·  ".join(links)))
    footer = fit(message.footer, FOOTER_MAX)
    footer = " · ".join(x for x in (footer, _timestamp(message.timestamp)) if x)
    if footer:
        elements.append(_text("mrkdwn", footer))
    return {"type": "context", "elements": elements}


def _block_chars(block: Mapping[str, Any]) -> int:
    texts = [block.get("text"), *block.get("fields", []), *block.get("elements", [])]
    return sum(len(t.get("text", "")) for t in texts if isinstance(t, Mapping))


def judge_api(reply: Reply, now: datetime) -> Verdict:
    """chat.postMessage answers 200 with ``{"ok": false, "error": ...}`` when it fails;
    ``ratelimited`` and server-side errors are retried (honouring ``Retry-After``)."""
    if reply.status != 200:
        return judge_status(reply, now)
    body = reply.json()
    if not isinstance(body, Mapping):
        return Verdict(reason=f"Slack API answered 200 without JSON: {reply.excerpt()}")
    if body.get("ok") is True:
        return DELIVERED
    error = str(body.get("error") or "unknown_error")
    if error in TRANSIENT_API_ERRORS:
        return Verdict(
            retry=True,
            reason=f"Slack API error {error}",
            retry_after=parse_retry_after(reply.headers.get("retry-after"), now),
        )
    return Verdict(reason=f"Slack API error {error}")


class SlackBot:
    """A bot token posting to one channel with ``chat.postMessage``."""

    kind = "slack"

    def __init__(self, entry: NotificationConfig, http: HttpDelivery) -> None:
        assert entry.token is not None and entry.channel is not None
        self._token = entry.token
        self._channel = entry.channel
        self._api_url = entry.api_url
        self._http = http
        self.target = f"chat.postMessage {entry.channel}"

    def send(self, message: Message, budget: RetryBudget) -> int:
        payload = {"channel": self._channel, **render(message)}
        return self._http.post_json(
            "slack",
            f"{self._api_url.get().rstrip('/')}/chat.postMessage",
            payload,
            headers={"Authorization": f"Bearer {self._token.get()}"},
            judge=judge_api,
            budget=budget,
        )
