"""``GET /costs?days=N`` (the cost history as JSON) and ``GET /metrics`` (Prometheus text),
both for operators, both read from the costs table only."""

from __future__ import annotations

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
    def costs() -> dict[str, Any]:
        from pitcrew.costs.report import cost_report, parse_days

        params: Mapping[str, str] = bp.current_request.query_params or {}
        unknown = sorted(set(params) - {"days"})
        if unknown:
            raise BadRequestError(f"unknown query parameter(s) {', '.join(unknown)}: use days")
        days = parse_days(params.get("days"))
        return cost_report(history(), context.config.costs, days)

    @route(bp, context, "/metrics")
    def metrics() -> Response:
        from pitcrew.costs.report import PROMETHEUS_CONTENT_TYPE, prometheus_text

        return Response(
            body=prometheus_text(history()),
            status_code=200,
            headers={"Content-Type": PROMETHEUS_CONTENT_TYPE},
        )

    return bp
