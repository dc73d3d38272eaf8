"""``GET /costs?days=N&top=N`` (the cost history as JSON) and ``GET /metrics`` (Prometheus
text), both for operators, both read from the costs table only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chalice import Blueprint, Response

from pitcrew.api.routes import ApiContext, route
from pitcrew.errors import BadRequestError


def blueprint(context: ApiContext) -> Blueprint:
    bp = Blueprint(__name__)

    def history() -> Any:
        from pitcrew.costs.history import CostHistory

        return CostHistory()

    @route(bp, context, "/costs")
    def costs() -> Response:
        from pitcrew.costs.report import check_size, cost_report, parse_days, parse_top

        params: Mapping[str, str] = bp.current_request.query_params or {}
        unknown = sorted(set(params) - {"days", "top"})
        if unknown:
            raise BadRequestError(
                f"unknown query parameter(s) {', '.join(unknown)}: use days and top"
            )
        days, top = parse_days(params.get("days")), parse_top(params.get("top"))
        report = cost_report(history(), context.config.costs, days, top=top)
        body = json.dumps(report)
        check_size(report, body)
        return Response(body=body, status_code=200, headers={"Content-Type": "application/json"})

    @route(bp, context, "/metrics")
    def metrics() -> Response:
        from pitcrew.costs.report import PROMETHEUS_CONTENT_TYPE, prometheus_text

        return Response(
            body=prometheus_text(history()),
            status_code=200,
            headers={"Content-Type": PROMETHEUS_CONTENT_TYPE},
        )

    return bp
