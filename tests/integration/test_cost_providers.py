"""The Azure and GCP cost providers against fakes of their APIs over loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from pitcrew.config import parse_config
from pitcrew.costs.azure import AzureCosts
from pitcrew.costs.gcp import GcpCosts
from pitcrew.costs.http import JsonHttp
from pitcrew.errors import ServiceError, TransientServiceError
from tests.support.fakecloud import azure_cost_management, bigquery, service_account_key
from tests.support.fakehttp import FakeService, Reply

AZURE_ROWS = [
    [12.5, 20240301, "Virtual Machines", "USD"],
    [3.25, 20240301, "Storage", "USD"],
    [14.0, 20240302, "Virtual Machines", "USD"],
    [0.75, 20240302, "Bandwidth", "USD"],
    [13.0, 20240304, "Virtual Machines", "USD"],
]


@pytest.fixture
def azure_fake() -> Iterator[FakeService]:
    service = azure_cost_management(AZURE_ROWS, page_size=2).start()
    yield service
    service.stop()


def azure_provider(url: str, secret: str = "azure-secret-value") -> AzureCosts:  # noqa: S107
    config = parse_config(
        {
            "costs": {
                "providers": {
                    "azure": {
                        "tenant_id": "tenant-1",
                        "client_id": "client-1",
                        "client_secret": secret,
                        "scope": "/subscriptions/00000000-0000-0000-0000-000000000001",
                        "login_url": url,
                        "management_url": url,
                    }
                }
            }
        }
    )
    assert config.costs is not None and config.costs.providers.azure is not None
    return AzureCosts(config.costs.providers.azure, JsonHttp("azure", sleep=lambda _: None))


def test_azure_reads_every_page_of_the_query(azure_fake: FakeService) -> None:
    provider = azure_provider(azure_fake.url)
    days = provider.daily_costs(date(2024, 3, 1), date(2024, 3, 5))
    assert [(d.day.isoformat(), d.groups) for d in days] == [
        ("2024-03-01", {"Virtual Machines": 12.5, "Storage": 3.25}),
        ("2024-03-02", {"Virtual Machines": 14.0, "Bandwidth": 0.75}),
        ("2024-03-03", {}),  # no rows: nothing spent that day
        ("2024-03-04", {"Virtual Machines": 13.0}),
    ]
    token = azure_fake.received("POST", "/tenant-1/oauth2/v2.0/token")
    assert len(token) == 1  # the token is reused across pages
    queries = azure_fake.received("POST", "/subscriptions/")
    assert len(queries) == 3
    body = queries[0].json()
    assert body["timePeriod"] == {
        "from": "2024-03-01T00:00:00+00:00",
        "to": "2024-03-04T23:59:59+00:00",
    }
    assert body["dataset"]["grouping"] == [{"type": "Dimension", "name": "ServiceName"}]
    assert queries[0].query["api-version"] == ["2023-03-01"]


def test_azure_backfill_is_asked_in_windows_of_31_days_and_204_is_no_spend() -> None:
    """A Daily query longer than 31 days would be cut short by Azure (the fake does as the
    guardrails say): the early days would read as no spend. 90 days are three queries."""
    start = date(2024, 1, 1)
    rows = [
        [10.0, int((start + timedelta(days=n)).strftime("%Y%m%d")), "VMs", "USD"] for n in range(90)
    ]
    service = azure_cost_management(rows, page_size=100).start()
    try:
        provider = azure_provider(service.url)
        days = provider.daily_costs(start, start + timedelta(days=90))
        assert [d.total for d in days] == [10.0] * 90
        periods = [q.json()["timePeriod"] for q in service.received("POST", "/subscriptions/")]
        assert [(p["from"][:10], p["to"][:10]) for p in periods] == [
            ("2024-01-01", "2024-01-31"),
            ("2024-02-01", "2024-03-02"),
            ("2024-03-03", "2024-03-30"),
        ]
        service.reply(
            "POST", r"^/(?P<scope>.+)/providers/Microsoft\.CostManagement/query$", Reply(204)
        )
        nothing = provider.daily_costs(date(2024, 4, 1), date(2024, 4, 3))
        assert [(d.day.isoformat(), d.groups) for d in nothing] == [
            ("2024-04-01", {}),
            ("2024-04-02", {}),
        ]
    finally:
        service.stop()


def test_azure_wrong_secret_is_a_clear_error(azure_fake: FakeService) -> None:
    with pytest.raises(ServiceError, match=r"401.*invalid_client"):
        azure_provider(azure_fake.url, secret="wrong").daily_costs(
            date(2024, 3, 1), date(2024, 3, 2)
        )


def test_azure_throttling_waits_as_told_then_gives_up(azure_fake: FakeService) -> None:
    azure_fake.reply(
        "POST",
        r"^/(?P<scope>.+)/providers/Microsoft\.CostManagement/query$",
        Reply(
            429,
            {"error": {"code": "429", "message": "Too many requests"}},
            {"x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after": "7"},
        ),
    )
    waits: list[float] = []
    provider = azure_provider(azure_fake.url)
    provider.http = JsonHttp("azure", sleep=waits.append, max_attempts=3)
    with pytest.raises(TransientServiceError, match="429"):
        provider.daily_costs(date(2024, 3, 1), date(2024, 3, 2))
    assert waits == [7.0, 7.0]


BQ_ROWS = [
    ("2024-03-01", "Compute Engine", 20.5),
    ("2024-03-01", "Cloud Storage", 1.25),
    ("2024-03-02", "Compute Engine", 19.0),
]


def test_gcp_with_a_service_account_key_reads_every_page() -> None:
    key, public_pem = service_account_key("https://oauth2.googleapis.com/token")
    fake = bigquery(BQ_ROWS, page_size=2, public_key_pem=public_pem).start()
    try:
        config = parse_config(
            {
                "costs": {
                    "providers": {
                        "aws": False,
                        "gcp": {
                            "project": "acme-billing",
                            "dataset": "billing",
                            "table": "gcp_billing_export_v1_0000",
                            "credentials": key,
                            "api_url": fake.url,
                            "token_url": f"{fake.url}/token",
                        },
                    }
                }
            }
        )
        assert config.costs is not None and config.costs.providers.gcp is not None
        provider = GcpCosts(config.costs.providers.gcp, JsonHttp("bigquery"))
        days = provider.daily_costs(date(2024, 3, 1), date(2024, 3, 3))
    finally:
        fake.stop()
    assert [(d.day.isoformat(), d.groups) for d in days] == [
        ("2024-03-01", {"Compute Engine": 20.5, "Cloud Storage": 1.25}),
        ("2024-03-02", {"Compute Engine": 19.0}),
    ]
    query = fake.received("POST", "/bigquery/v2/projects/acme-billing/queries")[0].json()
    assert "`acme-billing.billing.gcp_billing_export_v1_0000`" in query["query"]
    assert [p["parameterValue"]["value"] for p in query["queryParameters"]] == [
        "2024-03-01",
        "2024-03-03",
    ]
    polls = fake.received("GET", "/bigquery/v2/projects/acme-billing/queries/job_pitcrew_1")
    assert [p.query.get("pageToken") for p in polls] == [None, ["page-2"]]
    assert len(fake.received("POST", "/token")) == 1


def test_gcp_with_an_access_token_and_a_bad_token() -> None:
    fake = bigquery(BQ_ROWS, page_size=10, incomplete_first=False).start()
    try:
        for token, ok in (("gcp-token", True), ("expired", False)):
            config = parse_config(
                {
                    "costs": {
                        "providers": {
                            "gcp": {
                                "project": "acme-billing",
                                "dataset": "billing",
                                "table": "export",
                                "access_token": token,
                                "api_url": fake.url,
                            }
                        }
                    }
                }
            )
            assert config.costs is not None and config.costs.providers.gcp is not None
            provider = GcpCosts(config.costs.providers.gcp, JsonHttp("bigquery"))
            if ok:
                days = provider.daily_costs(date(2024, 3, 1), date(2024, 3, 3))
                assert sum(d.total for d in days) == pytest.approx(40.75)
            else:
                with pytest.raises(ServiceError, match="401"):
                    provider.daily_costs(date(2024, 3, 1), date(2024, 3, 3))
    finally:
        fake.stop()
