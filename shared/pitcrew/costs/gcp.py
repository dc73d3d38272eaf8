"""GCP costs: the Cloud Billing export in BigQuery, queried over the BigQuery REST API
(``jobs.query``, then ``jobs.getQueryResults`` until the job is complete and every page
read).

Credentials are a service-account JSON key, exchanged for an access token with the OAuth2
JWT bearer grant (RS256 signature with ``cryptography``, which the cost_tracker build
installs), or an ``access_token`` given as is. Costs are ``cost`` plus credits (negative),
per day of ``usage_start_time`` and ``service.description``, in the export's currency,
assumed to be USD.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from pitcrew.config import GcpCosts as GcpConfig
from pitcrew.costs.http import HttpCostProvider, JsonHttp
from pitcrew.costs.model import DailyCosts, days_between
from pitcrew.errors import ConfigError, ServiceError

SCOPE = "https://www.googleapis.com/auth/bigquery.readonly"
MAX_CALLS = 200
PAGE_ROWS = 10000

QUERY = """
SELECT FORMAT_DATE('%F', DATE(usage_start_time)) AS day,
       service.description AS service,
       SUM(cost) + SUM(IFNULL((SELECT SUM(c.amount) FROM UNNEST(credits) AS c), 0)) AS cost
FROM `{project}.{dataset}.{table}`
WHERE DATE(usage_start_time) >= @start AND DATE(usage_start_time) < @end
GROUP BY day, service
ORDER BY day, service
"""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_assertion(key: dict[str, Any], audience: str, now: float) -> str:
    """The RS256 JWT a service account presents to the token endpoint."""
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError as exc:  # pragma: no cover - depends on the layers deployed
        raise ConfigError(
            [
                "costs.providers.gcp.credentials: a service-account key needs the "
                "cryptography package; add it to the function's layers or give access_token"
            ]
        ) from exc
    header = {"alg": "RS256", "typ": "JWT", "kid": key.get("private_key_id")}
    claims = {
        "iss": key["client_email"],
        "scope": SCOPE,
        "aud": audience,
        "iat": int(now),
        "exp": int(now) + 3600,
    }
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    private_key = serialization.load_pem_private_key(key["private_key"].encode(), None)
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ConfigError(["costs.providers.gcp.credentials: the private key is not RSA"])
    signature = private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


class GcpCosts(HttpCostProvider):
    name = "gcp"
    service = "bigquery"

    def __init__(
        self,
        config: GcpConfig,
        http: JsonHttp | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(http, clock)
        self.config = config

    def token(self) -> str:
        if self.config.access_token is not None:
            return self.config.access_token.get()
        if self._token and self._token[1] > self.clock():
            return self._token[0]
        assert self.config.credentials is not None  # the config requires one of the two
        try:
            key = json.loads(self.config.credentials.get())
        except ValueError:
            key = None
        if not isinstance(key, dict) or not {"client_email", "private_key"} <= set(key):
            raise ConfigError(["costs.providers.gcp.credentials: not a service-account JSON key"])
        token_url = self.config.token_url.get()
        answer = self.http.request(
            "POST",
            token_url,
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": signed_assertion(key, token_url, self.clock()),
            },
        )
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            raise ServiceError("bigquery", "the token endpoint answered without an access_token")
        self._token = (str(token), self.clock() + float(answer.get("expires_in", 3600)) - 60)
        return str(token)

    def daily_costs(self, start: date, end: date) -> list[DailyCosts]:
        c = self.config
        base = f"{c.api_url.get().rstrip('/')}/bigquery/v2/projects/{c.project}/queries"
        answer = self.http.request(
            "POST",
            base,
            json={
                "query": QUERY.format(project=c.project, dataset=c.dataset, table=c.table),
                "useLegacySql": False,
                "parameterMode": "NAMED",
                "queryParameters": [
                    {
                        "name": name,
                        "parameterType": {"type": "DATE"},
                        "parameterValue": {"value": value.isoformat()},
                    }
                    for name, value in (("start", start), ("end", end))
                ],
                "timeoutMs": 20000,
                "maxResults": PAGE_ROWS,
            },
            token=self.token(),
        )
        groups: dict[date, dict[str, float]] = {d: {} for d in days_between(start, end)}
        for _ in range(MAX_CALLS):
            _raise_job_errors(answer)
            if answer.get("jobComplete"):
                _add_rows(groups, answer.get("rows", []))
                if not answer.get("pageToken"):
                    return [DailyCosts(self.name, d, g) for d, g in sorted(groups.items())]
            job = answer.get("jobReference", {})
            params = {"timeoutMs": "20000", "maxResults": str(PAGE_ROWS)}
            if job.get("location"):
                params["location"] = job["location"]
            if answer.get("jobComplete") and answer.get("pageToken"):
                params["pageToken"] = answer["pageToken"]
            answer = self.http.request(
                "GET", f"{base}/{job.get('jobId')}", params=params, token=self.token()
            )
        raise ServiceError("bigquery", f"the query did not finish within {MAX_CALLS} calls")


def _raise_job_errors(answer: dict[str, Any]) -> None:
    errors = answer.get("errors")
    if answer.get("jobComplete") and errors:
        raise ServiceError("bigquery", f"query failed: {errors[0].get('message', errors[0])}")


def _add_rows(groups: dict[date, dict[str, float]], rows: list[dict[str, Any]]) -> None:
    for row in rows:
        day_text, service, cost = (cell.get("v") for cell in row["f"])
        day = date.fromisoformat(str(day_text)[:10])
        if day in groups:
            name = str(service or "(none)")
            groups[day][name] = groups[day].get(name, 0.0) + float(cost or 0)
