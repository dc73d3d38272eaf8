"""``make demo``: the sample events in ``events/`` sent through a running ``pitcrew local``.

Each sample goes in the way its source would send it, and the demo prints what came back:

* ``alertmanager/*.json``: POST ``/webhooks/alertmanager`` with the configured bearer token;
* ``github/*.json``: POST ``/webhooks/github`` with the headers GitHub sends
  (``headers.json``), signed with the configured webhook secret when there is one;
* ``eventbridge/*.json``: PutEvents on the ``pitcrew`` bus, and the rules that match it;
* ``schedule/*.json``: delivered to the targets of the schedule rule it names.

Routes or rules the stack does not have yet are shown as they answer (404, 403, no rule).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pitcrew.local.emulator import CREDENTIALS

BODY_PREVIEW = 160


@dataclass
class Outcome:
    sample: str
    action: str
    result: str


def _preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= BODY_PREVIEW else text[: BODY_PREVIEW - 3] + "..."


class Demo:
    def __init__(
        self,
        *,
        api_url: str,
        aws_endpoint: str,
        events_dir: Path,
        config: str | None = None,
        bus: str = "pitcrew",
        region: str = "us-east-1",
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.aws_endpoint = aws_endpoint
        self.events_dir = events_dir
        self.config = config
        self.bus = bus
        self.region = region
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.session.Session().client(
                service,
                region_name=self.region,
                endpoint_url=self.aws_endpoint,
                **CREDENTIALS,
            )
        return self._clients[service]

    # ------------------------------------------------------------------ credentials

    def _config_value(self, *path: str) -> str | None:
        """A configuration value, references resolved against the running emulator."""
        os.environ["AWS_ENDPOINT_URL"] = self.aws_endpoint
        os.environ.setdefault("AWS_DEFAULT_REGION", self.region)
        try:
            from pitcrew.config import load_config

            node: Any = load_config(self.config)
            for name in path:
                node = getattr(node, name, None)
                if node is None:
                    return None
            return str(node.get())
        except Exception:
            return None

    # ------------------------------------------------------------------ samples

    def _samples(self, folder: str) -> list[Path]:
        directory = self.events_dir / folder
        if not directory.is_dir():
            return []
        return sorted(p for p in directory.glob("*.json") if p.name != "headers.json")

    def _post(self, http: Any, path: str, body: bytes, headers: dict[str, str]) -> str:
        response = http.post(f"{self.api_url}{path}", content=body, headers=headers)
        return f"{response.status_code} {_preview(response.text)}"

    def alertmanager(self, http: Any) -> Iterator[Outcome]:
        token = self._config_value("alertmanager", "token")
        for sample in self._samples("alertmanager"):
            headers = {"Content-Type": "application/json"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            result = self._post(http, "/webhooks/alertmanager", sample.read_bytes(), headers)
            yield Outcome(sample.name, "POST /webhooks/alertmanager", result)

    def github(self, http: Any) -> Iterator[Outcome]:
        headers_file = self.events_dir / "github" / "headers.json"
        all_headers = json.loads(headers_file.read_text()) if headers_file.is_file() else {}
        secret = self._config_value("github", "webhook_secret")
        for sample in self._samples("github"):
            body = sample.read_bytes()
            headers = dict(all_headers.get(sample.name, {"Content-Type": "application/json"}))
            if secret:
                digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                headers["X-Hub-Signature-256"] = f"sha256={digest}"
            action = "POST /webhooks/github" + ("" if secret else " (unsigned: no secret)")
            yield Outcome(sample.name, action, self._post(http, "/webhooks/github", body, headers))

    def _matching_rules(self, event: dict[str, Any], bus: str) -> list[str]:
        from moto.events.models import EventPattern

        events = self.client("events")
        matched = []
        for rule in events.list_rules(EventBusName=bus).get("Rules", []):
            pattern = rule.get("EventPattern")
            # Archives match through rules of their own: not something the stack runs.
            archive = rule["Name"].startswith("Events-Archive-")
            if not pattern or rule.get("State") == "DISABLED" or archive:
                continue
            if EventPattern.load(pattern).matches_event(event):  # type: ignore[arg-type]
                targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)
                arns = [t["Arn"].rsplit(":", 1)[-1] for t in targets.get("Targets", [])]
                matched.append(f"{rule['Name']} -> {', '.join(arns) or 'no target'}")
        return matched

    def eventbridge(self) -> Iterator[Outcome]:
        events = self.client("events")
        for sample in self._samples("eventbridge"):
            event = json.loads(sample.read_text())
            action = f"PutEvents {event.get('detail-type')} on bus {self.bus}"
            try:
                answer = events.put_events(
                    Entries=[
                        {
                            "EventBusName": self.bus,
                            "Source": event["source"],
                            "DetailType": event["detail-type"],
                            "Detail": json.dumps(event.get("detail", {})),
                            "Resources": event.get("resources", []),
                        }
                    ]
                )
            except Exception as exc:
                yield Outcome(sample.name, action, f"failed: {exc}")
                continue
            entry = answer["Entries"][0]
            if "EventId" not in entry:
                yield Outcome(sample.name, action, f"rejected: {entry.get('ErrorMessage')}")
                continue
            matched = self._matching_rules(event, self.bus)
            reached = "; ".join(matched) if matched else "no rule matches it: nothing runs"
            yield Outcome(sample.name, action, f"event {entry['EventId']}: {reached}")

    def schedule(self) -> Iterator[Outcome]:
        events = self.client("events")
        lam = self.client("lambda")
        rules = events.list_rules().get("Rules", [])
        for sample in self._samples("schedule"):
            event = json.loads(sample.read_text())
            named = str((event.get("resources") or [""])[0]).rsplit("/", 1)[-1]
            # Deployed names end in a random suffix, and the local runtime's separate the
            # function from the event ("pitcrew-CostTrackerFunction-Daily"): compare what
            # comes before the suffix, dashes left out.
            stem = named.rsplit("-", 1)[0] if named.count("-") >= 2 else named
            rule = next(
                (
                    r
                    for r in rules
                    if r.get("ScheduleExpression")
                    and r["Name"].replace("-", "").startswith(stem.replace("-", ""))
                ),
                None,
            )
            if rule is None:
                yield Outcome(sample.name, "scheduled event", f"no schedule rule {stem}* yet")
                continue
            event["resources"] = [rule["Arn"]]
            targets = events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", [])
            for target in targets:
                if ":lambda:" not in target["Arn"]:
                    continue
                answer = lam.invoke(FunctionName=target["Arn"], Payload=json.dumps(event))
                status = "error" if answer.get("FunctionError") else "ok"
                payload = answer["Payload"].read().decode()
                yield Outcome(
                    sample.name,
                    f"rule {rule['Name']} -> {target['Arn'].rsplit(':', 1)[-1]}",
                    f"{status} {_preview(payload)}",
                )

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        import httpx

        with httpx.Client(timeout=30) as http:
            try:
                health = http.get(f"{self.api_url}/healthz")
            except httpx.HTTPError:
                print(
                    f"pitcrew demo: nothing answers on {self.api_url}; "
                    "start the stack first with `make run`"
                )
                return 1
            print(f"GET /healthz -> {health.status_code} {_preview(health.text)}")
            sections = (
                ("alertmanager", self.alertmanager(http)),
                ("github", self.github(http)),
                ("eventbridge", self.eventbridge()),
                ("schedule", self.schedule()),
            )
            for title, outcomes in sections:
                print(f"\n== {title}")
                shown = False
                for outcome in outcomes:
                    shown = True
                    print(f"{outcome.sample:<34} {outcome.action}\n    -> {outcome.result}")
                if not shown:
                    print(f"(no samples in {self.events_dir / title})")
        return 0
