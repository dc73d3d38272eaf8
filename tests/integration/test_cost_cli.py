"""``pitcrew costs``: from the stack's table (moto) and from an API serving GET /costs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pitcrew.cli import main
from pitcrew.costs.cli import fetch_report
from pitcrew.costs.history import CostHistory
from pitcrew.costs.model import Anomaly, DailyCosts
from tests.support.fakehttp import FakeService, Reply


@pytest.fixture
def stored(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PITCREW_API_URL", raising=False)
    history = CostHistory()
    today = datetime.now(UTC).date()
    for n in range(1, 11):
        groups = {"Amazon EC2": 20.0 if n <= 5 else 10.0, "Amazon S3": 2.0}
        history.put_day(DailyCosts("aws", today - timedelta(days=n), groups))
    history.put_state(history.state("aws"))
    history.claim_anomaly(Anomaly("aws", "Amazon EC2", today - timedelta(days=2), 60.0, 10.0))


def test_table_json_and_csv_from_the_costs_table(
    stored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["costs", "--days", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    ec2 = report["groups"][0]
    assert (ec2["group"], ec2["total_usd"], ec2["change_pct"]) == ("Amazon EC2", 100.0, 100.0)

    assert main(["costs", "--days", "5", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "provider,group,total_usd,previous_usd,change_pct,anomaly_days"
    assert lines[1].startswith("aws,Amazon EC2,100.00,50.00,100.0,")

    assert main(["costs", "--days", "5"]) == 0
    out = capsys.readouterr().out
    assert "! Amazon EC2" in out and "+100.0%" in out and "Amazon S3" in out
    assert "groups" not in out.split("anomaly")[-1]  # every group is shown

    assert main(["costs", "--days", "5", "--top", "1"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the caption wraps
    assert "Amazon EC2" in out and "Amazon S3" not in out and "top 1 of 2 groups" in out
    for top in ("0", "-5"):
        with pytest.raises(SystemExit) as refused:
            main(["costs", "--top", top])
        assert refused.value.code == 2 and "--top" in capsys.readouterr().err


def test_bad_days_and_no_source_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COSTS_TABLE", raising=False)
    monkeypatch.delenv("PITCREW_API_URL", raising=False)
    assert main(["costs", "--days", "x"]) == 2
    assert "days must be a whole number" in capsys.readouterr().err
    assert main(["costs"]) == 2
    assert "no source" in capsys.readouterr().err


def test_reads_through_the_api_with_the_operator_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PITCREW_API_TOKEN", "tok-123456")
    api = FakeService("api")
    api.reply("GET", "/costs", Reply(200, {"days": 7, "groups": [], "anomalies": []}))
    api.start()
    try:
        assert fetch_report(7, api.url)["days"] == 7
        request = api.received("GET", "/costs")[0]
        assert request.query["days"] == ["7"]
        assert request.header("Authorization") == "Bearer tok-123456"
    finally:
        api.stop()


def test_api_problems_are_errors_naming_them_not_tracebacks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PITCREW_API_TOKEN", raising=False)
    assert main(["costs", "--api", "http://127.0.0.1:9"]) == 2
    assert "PITCREW_API_TOKEN" in capsys.readouterr().err

    monkeypatch.setenv("PITCREW_API_TOKEN", "tok-123456")
    closed = FakeService("closed")
    closed.start()
    url = closed.url
    closed.stop()  # nothing listens there any more
    assert main(["costs", "--api", url]) == 1
    assert f"cannot reach {url}" in capsys.readouterr().err

    html = FakeService("not pitcrew")
    html.reply("GET", "/costs", Reply(200, b"<html>login</html>"))
    html.start()
    try:
        assert main(["costs", "--api", html.url]) == 1
        assert "did not answer JSON" in capsys.readouterr().err
    finally:
        html.stop()
