"""Discord: a ``Message`` as one embed posted to a channel webhook, coloured by outcome
(green success, red failure, amber waiting or warning, blurple information).

Limits kept (Discord's "Embed Limits"): title 256 characters, description 4,096, 25 fields
of name 256 and value 1,024, footer 2,048, and 6,000 characters across the embed. Sections
share what the description has left; a cut text ends with a link to the full message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pitcrew.notify.http import Reply, Verdict, judge_status
from pitcrew.notify.message import ELLIPSIS, Message, Outcome, clip, fair_shares
from pitcrew.records import frozen

TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
EMBED_TOTAL_MAX = 6000
INLINE_MAX = 40  # short facts sit side by side
MIN_DESCRIPTION = 600  # below this, facts make room for the story
LINK_LABEL_MAX = 80

COLOURS: Mapping[Outcome, int] = {
    Outcome.SUCCESS: 0x2EB67D,
    Outcome.FAILURE: 0xE01E5A,
    Outcome.WARNING: 0xECB22E,
    Outcome.INFO: 0x5865F2,
}
_MARKDOWN = re.compile(r"([\\*_~`|>\[\]])")


@frozen
class _Field:
    name: str
    value: str


def escape(text: str) -> str:
    """Text shown as written, not as Discord markdown."""
    return _MARKDOWN.sub(r"\\\1", text)


def link(url: str, label: str) -> str:
    return f"[{escape(label)}]({url.replace(')', '%29').replace(' ', '%20')})"


def _code(text: str) -> str:
    # A fence inside the text would close ours early.
    return text.replace("```", "`\u200b``")


def embed_length(embed: Mapping[str, Any]) -> int:
    """The characters Discord counts toward an embed's 6,000."""
    total = len(embed.get("title", "")) + len(embed.get("description", ""))
    total += sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))
    total += len(embed.get("footer", {}).get("text", ""))
    return total + len(embed.get("author", {}).get("name", ""))


def render(message: Message) -> dict[str, Any]:
    """The webhook payload: one embed within Discord's limits, mentions disabled."""
    more = link(message.url, "full message") if message.url else ""
    title = clip(message.title, TITLE_MAX)
    footer = clip(message.footer, FOOTER_MAX)
    fields = []
    for fact in message.facts[:FIELDS_MAX]:
        value = link(fact.url, fact.value) if fact.url else ""
        if not value or len(value) > FIELD_VALUE_MAX:
            value = clip(escape(fact.value), FIELD_VALUE_MAX)
        fields.append(_Field(clip(fact.label, FIELD_NAME_MAX) or "-", value or "-"))

    def room() -> int:
        used = len(title) + len(footer) + sum(len(f.name) + len(f.value) for f in fields)
        return min(DESCRIPTION_MAX, EMBED_TOTAL_MAX - used)

    while fields and room() < MIN_DESCRIPTION:
        fields.pop()
    description = _description(message, room(), more)
    embed: dict[str, Any] = {"title": title, "description": description}
    if message.url:
        embed["url"] = message.url
    embed["color"] = COLOURS[message.outcome]
    if fields:
        embed["fields"] = [
            {"name": f.name, "value": f.value, "inline": len(f.value) <= INLINE_MAX} for f in fields
        ]
    if footer:
        embed["footer"] = {"text": footer}
    if message.timestamp and _is_iso(message.timestamp):
        embed["timestamp"] = message.timestamp
    return {"username": "pitcrew", "embeds": [embed], "allowed_mentions": {"parse": []}}


def _description(message: Message, limit: int, more: str) -> str:
    links = "  ·  ".join(link(x.url, clip(x.label, LINK_LABEL_MAX)) for x in message.links)
    heads = [""] + [f"**{escape(s.title)}**\n" for s in message.sections]
    bodies = [escape(message.summary)] + [
        _code(s.text) if s.code else escape(s.text) for s in message.sections
    ]
    fences = [0] + [len(f"```{s.language}\n\n```") if s.code else 0 for s in message.sections]
    fixed = sum(len(h) for h in heads) + sum(fences) + 2 * len(bodies)
    fixed += len(links) + 2 + len(more) + 2
    shares = fair_shares([len(b) for b in bodies], limit - fixed, limit)
    parts = []
    for index, (head, body, share) in enumerate(zip(heads, bodies, shares, strict=True)):
        text = clip(body, share)
        if index and message.sections[index - 1].code:
            text = f"```{message.sections[index - 1].language}\n{text}\n```"
        parts.append(head + text)
    if any(len(b) > s for b, s in zip(bodies, shares, strict=True)) and more:
        parts.append(f"{ELLIPSIS} {more}")
    if links:
        parts.append(links)
    return clip("\n\n".join(p for p in parts if p.strip()), limit)


def _is_iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def judge(reply: Reply, now: datetime) -> Verdict:
    """Discord answers 204 (200 with ``?wait=true``); its errors are JSON ``{"message",
    "code"}``, and a 429 says ``retry_after`` in seconds in the body as well as the header."""
    verdict = judge_status(reply, now)
    body = reply.json()
    if verdict.delivered or not isinstance(body, Mapping):
        return verdict
    reason = f"HTTP {reply.status}: {body.get('message') or reply.excerpt()}"
    if body.get("code"):
        reason += f" (code {body['code']})"
    retry_after = verdict.retry_after
    if retry_after is None and isinstance(body.get("retry_after"), int | float):
        retry_after = max(float(body["retry_after"]), 0.0)
    return Verdict(retry=verdict.retry, reason=reason, retry_after=retry_after)
