"""Azure costs: the Cost Management Query API, daily, grouped by service name, with an app
registration's client credentials (OAuth2, Microsoft identity platform v2.0).

The query asks ``ActualCost`` for a custom period, ``Daily`` granularity, the sum of
``Cost`` grouped by the ``ServiceName`` dimension; answers come in pages linked by
``properties.nextLink``, each a table (``columns`` + ``rows``). Amounts are in the billing
currency (``Currency`` column), assumed to be USD.

A ``Daily`` query covers at most 31 days (Microsoft's query guardrails: a longer period is
cut to its last month without an error, and the missing days would read as no spend), so
a backfill is asked in windows of 31 days; a steady-state run stays one query.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from pitcrew.config import AzureCosts as AzureConfig
from pitcrew.costs.http import HttpCostProvider, JsonHttp
from pitcrew.costs.model import DailyCosts, days_between
from pitcrew.errors import ServiceError

API_VERSION = "2023-03-01"
MAX_PAGES = 200
MAX_QUERY_DAYS = 31
_COST_COLUMNS = ("Cost", "PreTaxCost", "CostUSD", "totalCost")


class AzureCosts(HttpCostProvider):
    name = "azure"
    service = "azure"

    def __init__(
        self,
        config: AzureConfig,
        http: JsonHttp | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(http, clock)
        self.config = config

    def token(self) -> str:
        """An access token for Azure Resource Manager, fetched again shortly before expiry."""
        if self._token and self._token[1] > self.clock():
            return self._token[0]
        login = self.config.login_url.get().rstrip("/")
        management = self.config.management_url.get().rstrip("/")
        answer = self.http.request(
            "POST",
            f"{login}/{self.config.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.config.client_id,
                "client_secret": self.config.client_secret.get(),
                "scope": f"{management}/.default",
            },
        )
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            raise ServiceError("azure", "the token endpoint answered without an access_token")
        lifetime = float(answer.get("expires_in", 3600))
        self._token = (str(token), self.clock() + lifetime - 60)
        return str(token)

    def daily_costs(self, start: date, end: date) -> list[DailyCosts]:
        groups: dict[date, dict[str, float]] = {}
        window = start
        while window < end:
            until = min(end, window + timedelta(days=MAX_QUERY_DAYS))
            groups.update(self._query(window, until))
            window = until
        # The query covers every day: a day without rows cost nothing.
        return [DailyCosts(self.name, day, g) for day, g in sorted(groups.items())]

    def _query(self, start: date, end: date) -> dict[date, dict[str, float]]:
        """Every page of one query over [start, end), at most ``MAX_QUERY_DAYS`` days."""
        management = self.config.management_url.get().rstrip("/")
        url: str | None = (
            f"{management}{self.config.scope}/providers/Microsoft.CostManagement/query"
            f"?api-version={API_VERSION}"
        )
        body = {
            "type": "ActualCost",
            "timeframe": "Custom",
            "timePeriod": {
                "from": f"{start.isoformat()}T00:00:00+00:00",
                "to": f"{(end - timedelta(days=1)).isoformat()}T23:59:59+00:00",
            },
            "dataset": {
                "granularity": "Daily",
                "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
                "grouping": [{"type": "Dimension", "name": "ServiceName"}],
            },
        }
        groups: dict[date, dict[str, float]] = {d: {} for d in days_between(start, end)}
        for _ in range(MAX_PAGES):
            if not url:
                break
            answer = self.http.request("POST", url, json=body, token=self.token())
            properties = answer.get("properties", {}) if isinstance(answer, dict) else {}
            _add_rows(groups, properties)
            url = properties.get("nextLink")
        else:
            raise ServiceError("azure", f"more than {MAX_PAGES} pages of costs")
        return groups


def _add_rows(groups: dict[date, dict[str, float]], properties: dict[str, Any]) -> None:
    if not properties.get("rows"):
        return  # no rows (or 204 No Content): nothing spent, whatever the columns say
    names = [str(c.get("name")) for c in properties.get("columns", [])]
    try:
        cost = next(names.index(c) for c in _COST_COLUMNS if c in names)
        day_at, service_at = names.index("UsageDate"), names.index("ServiceName")
    except (StopIteration, ValueError) as exc:
        raise ServiceError("azure", f"unexpected query columns: {names}") from exc
    for row in properties.get("rows", []):
        day = _usage_date(row[day_at])
        if day not in groups:
            continue
        service = str(row[service_at] or "(none)")
        groups[day][service] = groups[day].get(service, 0.0) + float(row[cost] or 0)


def _usage_date(value: Any) -> date:
    text = str(value)
    if text.isdigit() and len(text) == 8:  # Daily granularity: 20240131 as a number
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    return date.fromisoformat(text[:10])
