"""pitcrew.notify renderers: every domain event's message, in every channel, within that
channel's documented limits, also when its fields are huge, and never with a secret in it."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from pitcrew.events import EventName
from pitcrew.notify import discord, email, slack, teams
from pitcrew.notify.compose import compose
from pitcrew.notify.message import Message, Outcome, clip, fair_shares, safe_url
from pitcrew.notify.routing import BusEvent
from pitcrew.observability import forget_secrets, register_secret
from tests.support.events import available_events, load_event

SAMPLES = sorted(
    name.removeprefix("eventbridge/").removesuffix(".json")
    for name in available_events()
    if name.startswith("eventbridge/")
)
INCIDENT_URL = "https://pitcrew.example.com/incidents/01JD3XK5Q8ZB7N4M2V6W9YT0RC"


def sample(name: str, **detail: Any) -> BusEvent:
    event = load_event(f"eventbridge/{name}.json")
    event["detail"].update(detail)
    return BusEvent.from_eventbridge(event)


def message_of(name: str, **detail: Any) -> Message:
    return compose(sample(name, **detail)).redacted()


# --- each channel's documented limits ---------------------------------------------------------


def slack_block_problems(i: int, block: dict[str, Any]) -> tuple[list[str], int]:
    """One block's problems, and the characters it carries."""
    kind = block["type"]
    if kind == "header":
        text = block["text"]
        ok = text["type"] == "plain_text" and 0 < len(text["text"]) <= 150
        return ([] if ok else [f"block {i}: header {text['type']} of {len(text['text'])}"]), len(
            text["text"]
        )
    if kind == "section":
        problems = []
        text = block.get("text", {}).get("text", "")
        fields = block.get("fields", [])
        if not text and not fields:
            problems.append(f"block {i}: section with neither text nor fields")
        if len(text) > 3000:
            problems.append(f"block {i}: section text of {len(text)}")
        if len(fields) > 10 or any(not 0 < len(f["text"]) <= 2000 for f in fields):
            problems.append(f"block {i}: fields {[len(f['text']) for f in fields]}")
        return problems, len(text) + sum(len(f["text"]) for f in fields)
    if kind == "context":
        elements = block["elements"]
        ok = 0 < len(elements) <= 10
        return ([] if ok else [f"block {i}: {len(elements)} context elements"]), sum(
            len(e["text"]) for e in elements
        )
    return [f"block {i}: unexpected type {kind}"], 0


def slack_problems(payload: dict[str, Any]) -> list[str]:
    """Block Kit limits (Slack's reference: header, section, context blocks)."""
    problems = []
    if not isinstance(payload.get("text"), str) or not payload["text"]:
        problems.append("no top-level text fallback")
    blocks = payload.get("blocks", [])
    if not 0 < len(blocks) <= 50:
        problems.append(f"{len(blocks)} blocks")
    total = 0
    for i, block in enumerate(blocks):
        found, chars = slack_block_problems(i, block)
        problems += found
        total += chars
    if total > 12_000:
        problems.append(f"blocks carry {total} characters (msg_blocks_too_long)")
    return problems


def discord_problems(payload: dict[str, Any]) -> list[str]:
    """Discord's embed limits."""
    problems = []
    embeds = payload.get("embeds", [])
    if not 0 < len(embeds) <= 10:
        problems.append(f"{len(embeds)} embeds")
    for embed in embeds:
        fields = embed.get("fields", [])
        sizes = {
            "title": (len(embed.get("title", "")), 256),
            "description": (len(embed.get("description", "")), 4096),
            "fields": (len(fields), 25),
            "footer": (len(embed.get("footer", {}).get("text", "")), 2048),
        }
        problems += [f"{k} {n} > {limit}" for k, (n, limit) in sizes.items() if n > limit]
        for field in fields:
            if not 0 < len(field["name"]) <= 256 or not 0 < len(field["value"]) <= 1024:
                problems.append(f"field {field['name'][:20]!r}")
        total = discord.embed_length(embed)
        if total > 6000:
            problems.append(f"embed of {total} characters")
        if not isinstance(embed.get("color"), int) or not 0 <= embed["color"] <= 0xFFFFFF:
            problems.append(f"color {embed.get('color')!r}")
    return problems


def teams_problems(payload: dict[str, Any]) -> list[str]:
    """An incoming webhook's Adaptive Card message, under Teams' 28 KB."""
    problems = []
    size = len(json.dumps(payload, ensure_ascii=False).encode())
    if size > 28 * 1024:
        problems.append(f"{size} bytes")
    (attachment,) = payload["attachments"]
    card = attachment["content"]
    if attachment["contentType"] != "application/vnd.microsoft.card.adaptive":
        problems.append(attachment["contentType"])
    if card["type"] != "AdaptiveCard" or tuple(map(int, card["version"].split("."))) < (1, 4):
        problems.append(f"{card['type']} {card['version']}")
    for item in card["body"]:
        if item["type"] == "TextBlock":
            if not item["text"] or not item.get("wrap"):
                problems.append("empty or unwrapped TextBlock")
        elif item["type"] == "FactSet":
            if not all(f["title"] and f["value"] for f in item["facts"]):
                problems.append("empty fact")
        else:
            problems.append(f"unexpected element {item['type']}")
    for action in card.get("actions", []):
        if action["type"] != "Action.OpenUrl" or not action["url"].startswith("http"):
            problems.append(f"action {action}")
    return problems


def email_problems(subject: str, body: str) -> list[str]:
    """SNS Publish: a subject under 100 printable ASCII characters on one line, and a body
    of at most 256 KB."""
    problems = []
    if not 0 < len(subject) < 100:
        problems.append(f"subject of {len(subject)}")
    if not subject.isascii() or not subject.isprintable():
        problems.append(f"subject {subject!r} is not printable ASCII")
    if len(body.encode()) > 262_144:
        problems.append(f"body of {len(body.encode())} bytes")
    return problems


CLEAN: dict[str, list[str]] = {"slack": [], "discord": [], "teams": [], "email": []}


def all_problems(message: Message) -> dict[str, list[str]]:
    return {
        "slack": slack_problems(slack.render(message)),
        "discord": discord_problems(discord.render(message)),
        "teams": teams_problems(teams.render(message)),
        "email": email_problems(*email.render(message)),
    }


def inflated(value: Any, size: int) -> Any:
    """Every string made ``size`` characters long, every list 200 items long."""
    if isinstance(value, str):
        return (value + " ") * (size // (len(value) + 1) + 1)
    if isinstance(value, list):
        items = [inflated(v, size) for v in value] or [inflated("item", size)]
        return (items * (200 // len(items) + 1))[:200]
    if isinstance(value, dict):
        return {k: inflated(v, size) for k, v in value.items()}
    return value


# --- every event, every channel -------------------------------------------------------------


def test_there_is_a_sample_for_every_domain_event() -> None:
    assert set(SAMPLES) == {name.value for name in EventName}


@pytest.mark.parametrize("name", SAMPLES)
def test_each_event_renders_within_every_channels_limits(name: str) -> None:
    message = message_of(name)
    assert message.title and message.summary
    assert all_problems(message) == CLEAN


@pytest.mark.parametrize("name", SAMPLES)
def test_huge_fields_are_truncated_not_refused(name: str) -> None:
    event = load_event(f"eventbridge/{name}.json")
    event["detail"] = inflated(event["detail"], 20_000)
    event["detail"]["url"] = INCIDENT_URL
    message = compose(BusEvent.from_eventbridge(event)).redacted()

    assert all_problems(message) == CLEAN
    slack_text = json.dumps(slack.render(message), ensure_ascii=False)
    assert "…" in slack_text
    assert f"<{INCIDENT_URL}|full message>" in slack_text
    assert f"[full message]({INCIDENT_URL})" in discord.render(message)["embeds"][0]["description"]


def test_a_cut_text_points_at_the_full_message() -> None:
    root_cause = "The working set grows past the limit. " * 1000
    message = message_of(
        "IncidentDiagnosed",
        url=INCIDENT_URL,
        diagnosis={**load_event("eventbridge/IncidentDiagnosed.json")["detail"]["diagnosis"]}
        | {"root_cause": root_cause},
    )
    blocks = slack.render(message)["blocks"]
    (cause,) = [b for b in blocks if b.get("text", {}).get("text", "").startswith("*Root cause*")]
    assert len(cause["text"]["text"]) <= 3000
    assert cause["text"]["text"].endswith(f"… <{INCIDENT_URL}|full message>")
    card = teams.render(message)["attachments"][0]["content"]
    assert any(INCIDENT_URL in b.get("text", "") for b in card["body"])


@pytest.mark.parametrize("limit", [1, 5, 10, 100, 3000])
def test_clip_never_exceeds_its_limit(limit: int) -> None:
    text = "x" * 5000
    clipped = clip(text, limit, more="<https://example.com/a/long/link|full message>")
    assert len(clipped) <= limit
    assert clip("short", limit) == "short"[:limit] or limit < 5


def test_fair_shares_give_short_texts_all_and_split_the_rest() -> None:
    assert fair_shares([10, 5000, 5000], 2010, 3000) == [10, 1000, 1000]
    assert fair_shares([10, 20], 1000, 3000) == [10, 20]
    assert sum(fair_shares([4000, 4000, 4000], 3000, 3000)) <= 3000


# --- what each message says ------------------------------------------------------------------


def everything(message: Message) -> str:
    """All the text of a message as Slack shows it."""
    return json.dumps(slack.render(message), ensure_ascii=False)


def test_incident_diagnosed_says_cause_category_workload_cluster_fix_and_summary() -> None:
    message = message_of("IncidentDiagnosed")
    text = everything(message)
    assert message.summary == "payments/api OOMKilled at 512Mi: raise the memory limit to 768Mi"
    for expected in (
        "killed by the kernel OOM killer",  # root cause
        "OOM killed",  # category
        "Deployment payments/api",  # workload
        "prod-eu",  # cluster
        "memory: 768Mi",  # the proposed patch, no PR yet
    ):
        assert expected in text
    assert message.outcome is Outcome.FAILURE


def test_a_fix_pull_request_replaces_the_proposed_patch_with_its_link() -> None:
    message = message_of("FixPullRequestOpened")
    text = everything(message)
    assert "<https://github.com/acme/platform-gitops/pull/412|acme/platform-gitops#412>" in text
    assert "memory: 768Mi" not in text
    assert message.outcome is Outcome.WARNING


def test_a_proposed_diff_is_shown_as_a_diff() -> None:
    diagnosis = load_event("eventbridge/IncidentDiagnosed.json")["detail"]["diagnosis"]
    diff = (
        "--- a/apps/payments/api.yaml\n+++ b/apps/payments/api.yaml\n"
        "-  memory: 512Mi\n+  memory: 768Mi"
    )
    message = message_of("IncidentDiagnosed", diagnosis={**diagnosis, "diff": diff})
    (fix,) = [s for s in message.sections if s.title.startswith("Proposed fix")]
    assert (fix.code, fix.language, fix.text) == (True, "diff", diff)
    assert (
        "```diff\n--- a/apps/payments/api.yaml"
        in discord.render(message)["embeds"][0]["description"]
    )


def test_incident_resolved_is_green() -> None:
    message = message_of("IncidentResolved")
    assert message.outcome is Outcome.SUCCESS
    assert discord.render(message)["embeds"][0]["color"] == discord.COLOURS[Outcome.SUCCESS]
    assert "resolved" in message.summary


def test_cost_anomaly_says_service_day_amount_against_baseline_and_what_preceded_it() -> None:
    preceding = [
        {
            "kind": "promotion",
            "title": "payments-api v1.42.0 to prod",
            "at": "2024-11-18T09:12:00Z",
            "url": "https://github.com/acme/platform-gitops/pull/415",
        },
        {"kind": "pull_request", "title": "scale api to 12 replicas", "at": "2024-11-17T16:40:00Z"},
    ]
    message = message_of("CostAnomalyDetected", preceding=preceding)
    assert message.summary == (
        "Amazon Elastic Compute Cloud - Compute cost $412.37 on 2024-11-18, against a 14-day "
        "baseline of $171.05 (+$241.32, 2.41\u00d7)"
    )
    (changes,) = message.sections
    assert "promotion: payments-api v1.42.0 to prod" in changes.text
    assert "pull request: scale api to 12 replicas" in changes.text
    assert message.links[0].url == "https://github.com/acme/platform-gitops/pull/415"


def test_budget_says_spent_limit_and_forecast() -> None:
    message = message_of("BudgetThresholdCrossed")
    assert message.title == "Budget monthly_total: 82% of $5,000.00 spent"
    assert "forecast of $6,012.50 exceeds it" in message.summary
    assert message.outcome is Outcome.WARNING
    over = message_of("BudgetThresholdCrossed", actual_usd=5100.0)
    assert over.outcome is Outcome.FAILURE


def test_promotion_awaiting_approval_says_environment_version_who_and_how() -> None:
    message = message_of("PromotionAwaitingApproval", approvers=["@platform-leads"])
    facts = {f.label: f.value for f in message.facts}
    assert (facts["Version"], facts["From"], facts["To"]) == ("v1.42.0", "staging", "prod")
    assert facts["Waiting for"] == "approval by @platform-leads"
    assert facts["Approve"] == "POST /promotions/01JD4B7R2Y9K3M5N8P0Q2S4T6V/approve"
    assert message.url == "https://github.com/acme/platform-gitops/pull/415"
    assert [link.label for link in message.links] == ["Pull request #415", "Execution"]
    assert message.outcome is Outcome.WARNING
    assert discord.render(message)["embeds"][0]["color"] == discord.COLOURS[Outcome.WARNING]


@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        ("PromotionStarted", Outcome.INFO),
        ("PromotionSucceeded", Outcome.SUCCESS),
        ("PromotionFailed", Outcome.FAILURE),
        ("PromotionRolledBack", Outcome.FAILURE),
        ("EnvironmentDegraded", Outcome.FAILURE),
    ],
)
def test_promotion_outcomes_pick_the_colour(name: str, outcome: Outcome) -> None:
    message = message_of(name)
    assert message.outcome is outcome
    assert discord.render(message)["embeds"][0]["color"] == discord.COLOURS[outcome]
    assert (
        teams.render(message)["attachments"][0]["content"]["body"][0]["color"]
        == (teams.COLOURS[outcome])
    )


def test_rollback_says_what_prod_is_back_on() -> None:
    assert message_of("PromotionRolledBack").summary.startswith("prod is back on v1.42.0")


def test_rotation_says_secret_and_outcome() -> None:
    done = message_of("SecretRotated")
    failed = message_of("SecretRotationFailed")
    assert done.title == "Secret rotated: pitcrew/alertmanager"
    assert done.outcome is Outcome.SUCCESS
    assert failed.title == "Secret rotation failed: apps/payments/api-key"
    assert "check-and-set parameter did not match" in failed.summary
    assert failed.outcome is Outcome.FAILURE


def test_any_other_event_gets_a_generic_message() -> None:
    event = BusEvent(
        name="CapacityReserved",
        detail={"cluster": "prod-eu", "nodes": 3, "pools": [{"name": "spot", "size": 2}]},
    )
    message = compose(event)
    assert message.title == "Capacity reserved"
    assert {f.label: f.value for f in message.facts} == {"Cluster": "prod-eu", "Nodes": "3"}
    assert '"spot"' in message.sections[0].text
    assert all_problems(message) == CLEAN


def test_a_detail_its_composer_cannot_read_still_gets_a_message() -> None:
    event = BusEvent(name="CostAnomalyDetected", detail={"preceding": "not a list", "ratio": {}})
    message = compose(event)
    assert message.title
    assert all_problems(message) == CLEAN


# --- safety ----------------------------------------------------------------------------------


@pytest.fixture
def secret() -> Iterator[str]:
    value = "s3cr3t-token-0xC0FFEE"
    register_secret(value)
    yield value
    forget_secrets()


@pytest.mark.parametrize("name", SAMPLES)
def test_no_channel_ever_shows_a_secret_or_url_credentials(name: str, secret: str) -> None:
    event = load_event(f"eventbridge/{name}.json")
    detail = copy.deepcopy(event["detail"])
    leaked = f"leaked {secret} via https://deploy:hunter2pass@git.example.com/x?token=abc123"
    event["detail"] = {
        **detail,
        "error": leaked,
        "reason": leaked,
        "summary": leaked,
        "url": f"https://ops:{secret}@pitcrew.example.com/x?sig=abc123",
    }
    message = compose(BusEvent.from_eventbridge(event)).redacted()
    rendered = [
        json.dumps(render(message), ensure_ascii=False)
        for render in (slack.render, discord.render, teams.render, email.render)
    ]
    for text in rendered:
        assert secret not in text
        assert "hunter2pass" not in text
        assert "abc123" not in text


def test_safe_url_keeps_where_a_link_goes_but_not_its_credentials() -> None:
    assert safe_url("https://u:p4ss@host.example.com/a?b=1&token=zz") == (
        "https://u:***@host.example.com/a?b=1&token=***"
    )
    assert safe_url("https://example.com/healthz") == "https://example.com/healthz"


def test_slack_text_cannot_mention_everyone_and_discord_mentions_are_off() -> None:
    diagnosis = load_event("eventbridge/IncidentDiagnosed.json")["detail"]["diagnosis"]
    message = message_of(
        "IncidentDiagnosed", diagnosis={**diagnosis, "summary_line": "<!channel> <@U123> & co"}
    )
    blocks = slack.render(message)["blocks"]
    assert blocks[1]["text"]["text"] == "&lt;!channel&gt; &lt;@U123&gt; &amp; co"
    assert discord.render(message)["allowed_mentions"] == {"parse": []}


def test_email_subject_is_one_ascii_line() -> None:
    message = message_of("PromotionAwaitingApproval")
    subject = email.subject(message)
    assert subject == "[pitcrew] Promotion awaiting approval: payments-api v1.42.0 -> prod"
    long = message_of("IncidentDiagnosed", namespace="n\u00e4me\n" * 40)
    assert email_problems(email.subject(long), "") == []
    assert re.fullmatch(r"[ -~]+", email.subject(long))
