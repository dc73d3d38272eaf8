"""Microsoft Teams: a ``Message`` as an Adaptive Card (1.4: TextBlocks, a FactSet and
Action.OpenUrl buttons) in the ``message`` envelope an incoming webhook takes.

Teams refuses messages above about 28 KB, so texts share a budget and the card is re-laid
with less text until its JSON fits. Legacy Office 365 connector webhooks answer 200 even when
delivery failed, saying so in the body ("Webhook message delivery failed with error: Microsoft
Teams endpoint returned HTTP error 429 ..."): ``judge`` reads that status out of the body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pitcrew.notify.http import Reply, Verdict, judge_status
from pitcrew.notify.message import ELLIPSIS, Message, Outcome, clip, fair_shares

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.4"
MAX_PAYLOAD_BYTES = 27 * 1024  # Teams' limit is 28 KB for the whole message
TEXT_BUDGET = 20_000
ACTIONS_MAX = 5
TITLE_MAX = 200
SECTION_TITLE_MAX = 200
FACT_MAX = 500
FACTS_BUDGET = 3000
FOOTER_MAX = 300

COLOURS: Mapping[Outcome, str] = {
    Outcome.SUCCESS: "Good",
    Outcome.FAILURE: "Attention",
    Outcome.WARNING: "Warning",
    Outcome.INFO: "Accent",
}
_BURIED_STATUS = re.compile(r"returned HTTP error (\d{3})")


def link(url: str, label: str) -> str:
    label = label.replace("[", "(").replace("]", ")")
    return f"[{label}]({url.replace(')', '%29').replace(' ', '%20')})"


def _text_block(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def card(message: Message, text_budget: int = TEXT_BUDGET) -> dict[str, Any]:
    """The Adaptive Card, its texts within about ``text_budget`` characters in all."""
    more = link(message.url, "full message") if message.url else ""
    values = [link(f.url, f.value) if f.url else f.value for f in message.facts]
    fact_shares = fair_shares([len(v) for v in values], FACTS_BUDGET, FACT_MAX)
    facts = [
        {
            "title": clip(fact.label, 100) or "-",
            "value": (value if len(value) <= share else clip(fact.value, share)) or "-",
        }
        for fact, value, share in zip(message.facts, values, fact_shares, strict=True)
    ]
    titles = [clip(s.title, SECTION_TITLE_MAX) for s in message.sections]
    footer = clip(message.footer, FOOTER_MAX)
    texts = [message.summary] + [s.text for s in message.sections]
    fixed = sum(len(f["title"]) + len(f["value"]) for f in facts) + len(footer)
    fixed += sum(len(t) for t in titles) + len(more) + 2
    shares = fair_shares([len(t) for t in texts], text_budget - fixed, text_budget)
    cut = any(len(t) > s for t, s in zip(texts, shares, strict=True))

    body: list[dict[str, Any]] = [
        _text_block(
            clip(message.title, TITLE_MAX),
            size="Large",
            weight="Bolder",
            color=COLOURS[message.outcome],
        ),
        _text_block(clip(message.summary, shares[0]) or ELLIPSIS),
    ]
    if facts:
        body.append({"type": "FactSet", "facts": facts})
    for title, section, share in zip(titles, message.sections, shares[1:], strict=True):
        body.append(_text_block(title or "-", weight="Bolder", spacing="Medium"))
        style = {"fontType": "Monospace"} if section.code else {}
        body.append(_text_block(clip(section.text, share) or ELLIPSIS, **style))
    if cut and more:
        body.append(_text_block(f"{ELLIPSIS} {more}"))
    if footer:
        stamp = f" · {message.timestamp}" if message.timestamp else ""
        body.append(_text_block(footer + stamp, isSubtle=True, size="Small", spacing="Medium"))
    content: dict[str, Any] = {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
    }
    actions = [
        {"type": "Action.OpenUrl", "title": clip(x.label, 50), "url": x.url}
        for x in message.links[:ACTIONS_MAX]
    ]
    if actions:
        content["actions"] = actions
    return content


def render(message: Message) -> dict[str, Any]:
    """The webhook payload: one Adaptive Card attachment, smaller than Teams' 28 KB."""
    budget = TEXT_BUDGET
    while True:
        payload = {
            "type": "message",
            "attachments": [
                {
                    "contentType": CARD_CONTENT_TYPE,
                    "contentUrl": None,
                    "content": card(message, budget),
                }
            ],
        }
        size = len(json.dumps(payload, ensure_ascii=False).encode())
        if size <= MAX_PAYLOAD_BYTES or budget <= 100:
            return payload
        budget = int(budget * MAX_PAYLOAD_BYTES / size * 0.9)


def judge(reply: Reply, now: datetime) -> Verdict:
    """A 2xx is delivered unless its body says delivery failed; then the status buried in
    the body decides (429 and 5xx are retried)."""
    if not 200 <= reply.status < 300 or "delivery failed" not in reply.text.lower():
        return judge_status(reply, now)
    buried = _BURIED_STATUS.search(reply.text)
    if buried is None:  # "Error contacting Microsoft Teams endpoint": worth another try
        return Verdict(retry=True, reason=f"Teams: {reply.excerpt()}")
    return judge_status(Reply(int(buried.group(1)), reply.headers, reply.text), now)
