"""GET /costs and GET /metrics over the real app, reading the stack's costs table (moto)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chalice.test import Client

from pitcrew.api import create_app
from pitcrew.config import parse_config
from pitcrew.costs.history import CostHistory
from pitcrew.costs.model import Anomaly, DailyCosts
from pitcrew.observability import instrument

TOKEN = "operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.setenv("TEST_OPERATOR_TOKEN", TOKEN)
    config = parse_config(
        {"api": {"token": "env:TEST_OPERATOR_TOKEN"}, "costs": {"budgets": {"monthly_total": 500}}}
    )
    history = CostHistory()
    today = datetime.now(UTC).date()
    for n in range(1, 15):
        day = today - timedelta(days=n)
        groups = {"Amazon EC2": 10.0 if n <= 7 else 5.0, 'odd "name"\\x': 1.0}
        history.put_day(DailyCosts("aws", day, groups))
    state = history.state("aws")
    state["month"] = {
        "month": today.strftime("%Y-%m"),
        "month_to_date_usd": 77.0,
        "forecast_usd": 310.0,
        "forecast_source": "cost_explorer",
    }
    history.put_state(state)
    history.claim_anomaly(Anomaly("aws", "Amazon EC2", today - timedelta(days=3), 90.0, 10.0))
    return Client(create_app(config, instrument("api-test")))


def test_costs_answers_series_change_and_anomalies(client: Client) -> None:
    response = client.http.get("/costs?days=7", headers=AUTH)
    assert response.status_code == 200
    body = json.loads(response.body)
    assert body["days"] == 7 and len(body["daily"]) == 7
    assert body["total_usd"] == pytest.approx(77.0)
    ec2 = next(g for g in body["groups"] if g["group"] == "Amazon EC2")
    assert (ec2["total_usd"], ec2["previous_usd"], ec2["change_pct"]) == (70.0, 35.0, 100.0)
    assert [a["group"] for a in body["anomalies"]] == ["Amazon EC2"]
    assert body["forecast"]["forecast_usd"] == 310.0
    assert body["budgets"][0]["name"] == "monthly_total"


@pytest.mark.parametrize("days", ["0", "abc", "-3", "400", "1.5", "%C2%B2", "9" * 5000])
def test_costs_refuses_a_bad_days(client: Client, days: str) -> None:
    response = client.http.get(f"/costs?days={days}", headers=AUTH)
    assert response.status_code == 400
    assert "days" in json.loads(response.body)["error"]


def test_top_keeps_the_costliest_groups_and_sums_the_rest(client: Client) -> None:
    response = client.http.get("/costs?days=7&top=1", headers=AUTH)
    assert response.status_code == 200
    body = json.loads(response.body)
    assert body["groups_total"] == 2
    ec2, others = body["groups"]
    assert ec2["group"] == "Amazon EC2"
    assert others["group"] == "(other 1 groups)"
    assert (others["total_usd"], others["previous_usd"]) == (7.0, 7.0)
    assert others["series"] == [1.0] * 7
    assert body["total_usd"] == pytest.approx(ec2["total_usd"] + others["total_usd"])


@pytest.mark.parametrize("top", ["0", "x", "10001"])
def test_costs_refuses_a_bad_top(client: Client, top: str) -> None:
    response = client.http.get(f"/costs?top={top}", headers=AUTH)
    assert response.status_code == 400
    assert "top" in json.loads(response.body)["error"]


def test_a_report_too_large_for_lambda_says_how_to_ask_for_less(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = len(client.http.get("/costs?days=1&top=1", headers=AUTH).body)
    monkeypatch.setattr("pitcrew.costs.report.MAX_REPORT_BYTES", small)

    response = client.http.get("/costs?days=14", headers=AUTH)

    assert response.status_code == 400
    error = json.loads(response.body)["error"]
    assert "14 days of 2 cost groups" in error and "?top=N" in error and "?days=N" in error
    assert client.http.get("/costs?days=1&top=1", headers=AUTH).status_code == 200


def test_costs_and_metrics_need_the_operator_token(client: Client) -> None:
    assert client.http.get("/costs").status_code == 401
    assert client.http.get("/metrics").status_code == 401


def test_metrics_is_prometheus_text_with_escaped_labels(client: Client) -> None:
    response = client.http.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.body.decode()
    for family, kind in (
        ("pitcrew_cost_daily_usd", "gauge"),
        ("pitcrew_cost_month_to_date_usd", "gauge"),
        ("pitcrew_cost_forecast_month_usd", "gauge"),
        ("pitcrew_cost_anomalies_total", "counter"),
    ):
        assert f"# TYPE {family} {kind}\n" in text and f"# HELP {family} " in text
    assert 'pitcrew_cost_daily_usd{provider="aws",group="Amazon EC2"} 10.0\n' in text
    assert 'group="odd \\"name\\"\\\\x"} 1.0' in text
    assert 'pitcrew_cost_forecast_month_usd{provider="aws"} 310.0' in text
    assert 'pitcrew_cost_anomalies_total{provider="aws"} 1.0' in text
    assert text.endswith("\n")


def test_the_grafana_dashboard_queries_only_metrics_the_api_serves(client: Client) -> None:
    import re
    from pathlib import Path

    dashboard = json.loads(
        (Path(__file__).resolve().parents[2] / "infra/dashboards/pitcrew-costs.json").read_text()
    )
    served = set(
        re.findall(r"^# TYPE (\S+) ", client.http.get("/metrics", headers=AUTH).body.decode(), re.M)
    )
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"pitcrew_[a-z_]+", e)}
    assert used and used <= served


_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r'(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})?'
    r" (?P<value>\S+)$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def test_metrics_parse_as_prometheus_would_scrape_them(client: Client) -> None:
    """Text format 0.0.4 as Prometheus reads it: each family's HELP and TYPE once, before its
    samples and together; every sample a name, escaped labels and a float; each series once."""
    text = client.http.get("/metrics", headers=AUTH).body.decode()
    assert text.endswith("\n") and "\n\n" not in text
    described: dict[str, set[str]] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    family = None
    for line in text.splitlines():
        if line.startswith("# "):
            kind, name, rest = line[2:].split(" ", 2)
            assert kind in ("HELP", "TYPE") and kind not in described.setdefault(name, set())
            described[name].add(kind)
            assert kind == "HELP" or rest in ("gauge", "counter")
            family = name
            continue
        match = _SAMPLE.match(line)
        assert match, line
        assert match["name"] == family and described[family] == {"HELP", "TYPE"}, line
        float(match["value"])
        labels = tuple(_LABEL.findall(match["labels"] or ""))
        assert len({k for k, _ in labels}) == len(labels), line
        assert (match["name"], labels) not in seen, f"two samples of one series: {line}"
        seen.add((match["name"], labels))
    assert (
        "pitcrew_cost_daily_usd",
        (("provider", "aws"), ("group", 'odd \\"name\\"\\\\x')),
    ) in seen
