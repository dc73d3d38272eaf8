"""Fakes of the cloud cost APIs, shaped like the real responses.

- ``CostExplorerFake``: moto's Cost Explorer client (``GetCostAndUsage`` answers are queued
  with ``queue_cost_and_usage``, as moto's ``/moto-api/static/ce/cost-and-usage-results``
  does) plus what moto lacks: ``GetCostForecast``, ``GetAnomalyMonitors``, ``GetAnomalies``,
  and throttling on demand. Every call emits botocore's ``before-sign`` event on the real
  client's event system, so pitcrew's request counter sees each one as it would a request.
- ``azure_cost_management``: a ``FakeService`` with the Microsoft identity platform token
  endpoint (client credentials) and the Cost Management Query API (``nextLink`` pages).
- ``bigquery``: a ``FakeService`` with Google's OAuth2 token endpoint (JWT bearer grant,
  signature checked) and BigQuery ``jobs.query`` / ``jobs.getQueryResults`` (``pageToken``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qs

from botocore.exceptions import ClientError

from tests.support.fakehttp import FakeService, Reply, Request


def cost_and_usage_page(
    days: dict[str, dict[str, float]],
    *,
    metric: str = "UnblendedCost",
    estimated: set[str] | frozenset[str] = frozenset(),
    next_token: str | None = None,
    group_by: tuple[dict[str, str], ...] = ({"Type": "DIMENSION", "Key": "SERVICE"},),
) -> dict[str, Any]:
    """One GetCostAndUsage answer, DAILY, grouped (as Cost Explorer returns it). Grouped by
    two keys, a group named ``"Amazon EC2 | Environment$prod"`` has those two ``Keys`` (a
    tag's key is ``tagkey$value``, ``tagkey$`` when untagged)."""
    results = []
    for day, groups in sorted(days.items()):
        end = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
        results.append(
            {
                "TimePeriod": {"Start": day, "End": end},
                "Total": {},
                "Groups": [
                    {
                        "Keys": name.split(" | ") if len(group_by) > 1 else [name],
                        "Metrics": {metric: {"Amount": f"{amount:.10f}", "Unit": "USD"}},
                    }
                    for name, amount in sorted(groups.items())
                ],
                "Estimated": day in estimated,
            }
        )
    page: dict[str, Any] = {
        "GroupDefinitions": list(group_by),
        "ResultsByTime": results,
        "DimensionValueAttributes": [],
    }
    if next_token:
        page["NextPageToken"] = next_token
    return page


def queue_cost_and_usage(*pages: dict[str, Any]) -> None:
    """Queue answers for moto's GetCostAndUsage, in the order requests will come."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.moto_api._internal.models import moto_api_backend

    for page in pages:
        moto_api_backend.set_ce_cost_usage(page, DEFAULT_ACCOUNT_ID)


class CostExplorerFake:
    """moto's Cost Explorer client with the operations moto lacks answered from fixtures."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.meta = client.meta
        self.forecast_usd = 0.0
        self.monitors: list[str] = []
        self.anomaly_items: list[dict[str, Any]] = []
        self.throttle = 0  # the next N GetCostAndUsage calls are throttled
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _request(self, operation: str, params: dict[str, Any]) -> None:
        self.calls.append((operation, params))
        self.meta.events.emit(f"before-sign.cost-explorer.{operation}", request=None)

    def get_cost_and_usage(self, **params: Any) -> dict[str, Any]:
        if self.throttle:
            self.throttle -= 1
            self._request("GetCostAndUsage", params)
            raise ClientError(
                {
                    "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                },
                "GetCostAndUsage",
            )
        self.calls.append(("GetCostAndUsage", params))  # moto's call is signed (counted)
        response: dict[str, Any] = self._client.get_cost_and_usage(**params)
        return response

    def get_cost_forecast(self, **params: Any) -> dict[str, Any]:
        self._request("GetCostForecast", params)
        amount = f"{self.forecast_usd:.4f}"
        return {
            "Total": {"Amount": amount, "Unit": "USD"},
            "ForecastResultsByTime": [{"TimePeriod": params["TimePeriod"], "MeanValue": amount}],
        }

    def get_anomaly_monitors(self, **params: Any) -> dict[str, Any]:
        self._request("GetAnomalyMonitors", params)
        return {
            "AnomalyMonitors": [
                {
                    "MonitorArn": arn,
                    "MonitorName": "services",
                    "MonitorType": "DIMENSIONAL",
                    "MonitorDimension": "SERVICE",
                }
                for arn in self.monitors
            ]
        }

    def get_anomalies(self, **params: Any) -> dict[str, Any]:
        self._request("GetAnomalies", params)
        return {"Anomalies": list(self.anomaly_items)}


def aws_anomaly(service: str, day: str, actual: float, expected: float) -> dict[str, Any]:
    """One anomaly as GetAnomalies returns it."""
    return {
        "AnomalyId": f"anomaly-{service[:8]}-{day}",
        "AnomalyStartDate": day,
        "AnomalyEndDate": day,
        "DimensionValue": service,
        "RootCauses": [{"Service": service, "Region": "us-east-1", "UsageType": "BoxUsage"}],
        "AnomalyScore": {"MaxScore": 0.91, "CurrentScore": 0.91},
        "Impact": {
            "MaxImpact": actual - expected,
            "TotalImpact": actual - expected,
            "TotalActualSpend": actual,
            "TotalExpectedSpend": expected,
        },
        "MonitorArn": "arn:aws:ce::123456789012:anomalymonitor/services",
        "Feedback": "YES",
    }


# -- Azure Cost Management ------------------------------------------------------------------


def azure_cost_management(
    rows: list[list[Any]],
    *,
    page_size: int = 2,
    secret: str = "azure-secret-value",  # noqa: S107 - the fake's own test credential
) -> FakeService:
    """Token endpoint ``POST /{tenant}/oauth2/v2.0/token`` and the Query API ``POST
    {scope}/providers/Microsoft.CostManagement/query`` answering the ``rows`` (``[cost,
    yyyymmdd, service, currency]``) of the body's ``timePeriod`` ``page_size`` at a time
    through ``nextLink``. A Daily period longer than 31 days is cut to its last 31, without
    an error, as Microsoft's query guardrails describe."""
    service = FakeService("azure")

    @service.route("POST", "/{tenant}/oauth2/v2.0/token")
    def token(request: Request) -> Reply:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "client_credentials" or form.get("client_secret") != secret:
            return Reply(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                },
            )
        return Reply(
            200, {"token_type": "Bearer", "expires_in": 3599, "access_token": "azure-token"}
        )

    @service.route("POST", r"^/(?P<scope>.+)/providers/Microsoft\.CostManagement/query$")
    def query(request: Request) -> Reply:
        if request.header("Authorization") != "Bearer azure-token":
            return Reply(401, {"error": {"code": "AuthenticationFailed", "message": "no"}})
        period = request.json()["timePeriod"]
        last = date.fromisoformat(period["to"][:10])
        first = max(date.fromisoformat(period["from"][:10]), last - timedelta(days=30))
        chosen = [r for r in rows if first <= date.fromisoformat(_iso(r[1])) <= last]
        skip = int(request.query.get("$skiptoken", ["0"])[0])
        page = chosen[skip : skip + page_size]
        more = skip + page_size < len(chosen)
        scope = request.params["scope"]
        next_link = (
            f"{service.url}/{scope}/providers/Microsoft.CostManagement/query"
            f"?api-version=2023-03-01&$skiptoken={skip + page_size}"
            if more
            else None
        )
        return Reply(
            200,
            {
                "id": f"/{scope}/providers/Microsoft.CostManagement/query/00000000",
                "name": "00000000-0000-0000-0000-000000000000",
                "type": "Microsoft.CostManagement/query",
                "location": None,
                "sku": None,
                "eTag": None,
                "properties": {
                    "nextLink": next_link,
                    "columns": [
                        {"name": "Cost", "type": "Number"},
                        {"name": "UsageDate", "type": "Number"},
                        {"name": "ServiceName", "type": "String"},
                        {"name": "Currency", "type": "String"},
                    ],
                    "rows": page,
                },
            },
        )

    return service


def _iso(yyyymmdd: int) -> str:
    text = str(yyyymmdd)
    return f"{text[:4]}-{text[4:6]}-{text[6:]}"


# -- BigQuery -----------------------------------------------------------------------------------


def bigquery(
    rows: list[tuple[str, str, float]],
    *,
    public_key_pem: bytes | None = None,
    page_size: int = 2,
    incomplete_first: bool = True,
    now: Callable[[], float] = time.time,
) -> FakeService:
    """Google's token endpoint (``POST /token``, the JWT bearer grant; the assertion's RS256
    signature is checked with ``public_key_pem``) and BigQuery ``jobs.query`` /
    ``jobs.getQueryResults`` answering ``rows`` (``(day, service, cost)``). The first
    answer says ``jobComplete: false`` when ``incomplete_first``, as a slow query does."""
    service = FakeService("bigquery")
    job = {"id": "job_pitcrew_1", "polled": False}

    @service.route("POST", "/token")
    def token(request: Request) -> Reply:
        import jwt

        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return Reply(400, {"error": "unsupported_grant_type"})
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                public_key_pem,
                algorithms=["RS256"],
                audience=f"{service.url}/token",
            )
        except jwt.PyJWTError as exc:
            return Reply(400, {"error": "invalid_grant", "error_description": str(exc)})
        if "bigquery" not in claims.get("scope", "") or claims["exp"] < now():
            return Reply(400, {"error": "invalid_scope"})
        return Reply(200, {"access_token": "gcp-token", "expires_in": 3599, "token_type": "Bearer"})

    def page(start: int) -> dict[str, Any]:
        chunk = rows[start : start + page_size]
        answer: dict[str, Any] = {
            "kind": "bigquery#getQueryResultsResponse",
            "schema": {
                "fields": [
                    {"name": "day", "type": "DATE", "mode": "NULLABLE"},
                    {"name": "service", "type": "STRING", "mode": "NULLABLE"},
                    {"name": "cost", "type": "FLOAT", "mode": "NULLABLE"},
                ]
            },
            "jobReference": {"projectId": "acme-billing", "jobId": job["id"], "location": "US"},
            "totalRows": str(len(rows)),
            "rows": [{"f": [{"v": d}, {"v": s}, {"v": repr(c)}]} for d, s, c in chunk],
            "jobComplete": True,
            "cacheHit": False,
        }
        if start + page_size < len(rows):
            answer["pageToken"] = f"page-{start + page_size}"
        return answer

    @service.route("POST", "/bigquery/v2/projects/{project}/queries")
    def query(request: Request) -> Reply:
        if request.header("Authorization") != "Bearer gcp-token":
            return Reply(401, {"error": {"code": 401, "message": "Invalid Credentials"}})
        body = request.json()
        if body.get("useLegacySql") is not False or not body.get("queryParameters"):
            return Reply(400, {"error": {"code": 400, "message": "bad query request"}})
        if incomplete_first:
            return Reply(
                200,
                {
                    "kind": "bigquery#queryResponse",
                    "jobReference": {
                        "projectId": request.params["project"],
                        "jobId": job["id"],
                        "location": "US",
                    },
                    "jobComplete": False,
                },
            )
        return Reply(200, {**page(0), "kind": "bigquery#queryResponse"})

    @service.route("GET", "/bigquery/v2/projects/{project}/queries/{job}")
    def results(request: Request) -> Reply:
        if request.header("Authorization") != "Bearer gcp-token":
            return Reply(401, {"error": {"code": 401, "message": "Invalid Credentials"}})
        token = request.query.get("pageToken", ["page-0"])[0]
        return Reply(200, page(int(token.split("-")[1])))

    return service


def service_account_key(token_uri: str) -> tuple[str, bytes]:
    """A service-account JSON key (a fresh RSA key) and its public key in PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    document = {
        "type": "service_account",
        "project_id": "acme-billing",
        "private_key_id": "0123456789abcdef",
        "private_key": private_pem,
        "client_email": "pitcrew@acme-billing.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": token_uri,
    }
    return json.dumps(document), public_pem
