"""The notify function in the local runtime: template.yaml's stack on the embedded emulator,
a configuration whose Slack webhook is a fake Slack server on loopback, and a domain event put
on the ``pitcrew`` bus through the emulator's EventBridge API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pitcrew.local.template import default_template_path
from tests.support.events import load_event
from tests.support.fakehttp import Reply, fake_service
from tests.support.local import local_runtime, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local-runtime")]

SLACK_HOOK = "/services/T024BE7LD/B07QJ5H8M4R/local-hook-credential"


def test_an_event_put_on_the_bus_reaches_the_fake_slack_server(tmp_path: Path) -> None:
    with fake_service("slack") as slack:
        slack.reply("POST", SLACK_HOOK, Reply(200, "ok"))
        config = tmp_path / "pitcrew.yaml"
        config.write_text(
            "notifications:\n"
            f"  - {{type: slack, webhook_url: '{slack.url}{SLACK_HOOK}', "
            "events: [IncidentDiagnosed]}\n",
            encoding="utf-8",
        )
        sample = load_event("eventbridge/IncidentDiagnosed.json")

        with local_runtime(default_template_path(), config=config, serve_api=False) as runtime:
            answer = runtime.client("events").put_events(
                Entries=[
                    {
                        "EventBusName": "pitcrew",
                        "Source": "pitcrew",
                        "DetailType": "IncidentDiagnosed",
                        "Detail": json.dumps(sample["detail"]),
                    }
                ]
            )
            assert answer["FailedEntryCount"] == 0

            (request,) = wait_for(lambda: slack.received("POST", SLACK_HOOK), timeout=20)
            payload = request.json()
            assert payload["blocks"][0]["text"]["text"] == (
                ":red_circle: Incident diagnosed: payments/api (OOM killed)"
            )
            assert payload["text"].endswith("raise the memory limit to 768Mi")
