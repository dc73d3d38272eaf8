"""``POST /promotions`` (start), ``GET /promotions[/{id}]``, ``POST /promotions/{id}/approve``
and ``/reject`` (409 when nothing awaits approval), ``GET /environments`` (each
environment's versions and health): the operator API of ``pitcrew.promotions``.
"""

from __future__ import annotations

import json
from typing import Any

from chalice import Blueprint, Response

from pitcrew.api.routes import ApiContext, query_limit, route
from pitcrew.errors import BadRequestError

MAX_LIST = 200
# `curl -d` sends form-encoded: the body is still read as JSON, so a mistake gets a 400 naming
# it rather than Chalice's own 415.
BODY_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain"]
_START_KEYS = {"app", "version", "to", "only", "requested_by", "request_id", "rollback"}


def blueprint(context: ApiContext, store: Any | None = None) -> Blueprint:
    bp = Blueprint(__name__)
    stores: list[Any] = [store] if store is not None else []

    def promotions() -> Any:
        if not stores:
            from pitcrew.promotions.store import PromotionStore

            stores.append(PromotionStore())
        return stores[0]

    def body() -> dict[str, Any]:
        raw = bp.current_request.raw_body or b""
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise BadRequestError(f"the body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise BadRequestError("the body must be a JSON object")
        return data

    @route(bp, context, "/promotions", methods=("POST",), content_types=BODY_TYPES)
    def start() -> Response:
        promotion = _start(context, body(), promotions())
        return Response(body=promotion.as_api(), status_code=202)

    @route(bp, context, "/promotions")
    def list_promotions() -> dict[str, Any]:
        query: dict[str, str] = dict(bp.current_request.query_params or {})
        unknown = sorted(set(query) - {"app", "limit"})
        if unknown:
            raise BadRequestError(
                f"unknown query parameter(s) {', '.join(unknown)}: use app and limit"
            )
        limit = query_limit(query.get("limit", "50"), MAX_LIST)
        found = promotions().recent(limit=limit, app=query.get("app"))
        return {"promotions": [p.as_api() for p in found], "count": len(found)}

    @route(bp, context, "/promotions/{promotion_id}")
    def get_promotion(promotion_id: str) -> dict[str, Any]:
        result: dict[str, Any] = promotions().get(promotion_id).as_api()
        return result

    def decision(promotion_id: str, approve: bool) -> dict[str, Any]:
        from pitcrew.promotions.approvals import decide

        data = body()
        by = data.get("by") or "operator"
        reason = data.get("reason") or ""
        if not isinstance(by, str) or not isinstance(reason, str):
            raise BadRequestError("by and reason: expected strings")
        result: dict[str, Any] = decide(
            promotion_id, approve, by, reason, store=promotions()
        ).as_api()
        return result

    @route(
        bp,
        context,
        "/promotions/{promotion_id}/approve",
        methods=("POST",),
        content_types=BODY_TYPES,
    )
    def approve(promotion_id: str) -> dict[str, Any]:
        return decision(promotion_id, True)

    @route(
        bp,
        context,
        "/promotions/{promotion_id}/reject",
        methods=("POST",),
        content_types=BODY_TYPES,
    )
    def reject(promotion_id: str) -> dict[str, Any]:
        return decision(promotion_id, False)

    @route(bp, context, "/environments")
    def list_environments() -> dict[str, Any]:
        store = promotions()
        shown = []
        for env in context.config.environments or ():
            shown.append(
                {
                    "name": env.name,
                    "path": env.path,
                    "approval": env.approval,
                    "auto_promote": env.auto_promote,
                    "health": store.health(env.name),
                    "apps": [
                        {
                            "app": v.app,
                            "current": v.current,
                            "previous": v.previous,
                            "stable": v.stable,
                            "previous_stable": v.previous_stable,
                            "updated_at": v.updated_at,
                            "promotion": v.promotion,
                        }
                        for v in store.all_versions(env.name)
                    ],
                }
            )
        return {"environments": shown}

    return bp


def _start(context: ApiContext, data: dict[str, Any], store: Any) -> Any:
    """``POST /promotions``: a promotion, or a rollback (``rollback: true``, ``to`` its
    environment) to the environment's stable version."""
    from pitcrew.promotions.start import start_promotion, start_rollback

    unknown = sorted(set(data) - _START_KEYS)
    if unknown:
        known = ", ".join(sorted(_START_KEYS))
        raise BadRequestError(f"unknown field(s) {', '.join(unknown)} (known: {known})")
    for flag in ("only", "rollback"):
        if not isinstance(data.get(flag, False), bool):
            raise BadRequestError(f"{flag}: expected true or false")
    to = data.get("to")
    if to is not None and not isinstance(to, str):
        raise BadRequestError("to: expected an environment name")
    requested_by = data.get("requested_by")
    if requested_by is not None and not isinstance(requested_by, str):
        raise BadRequestError("requested_by: expected a string")
    if data.get("rollback"):
        if to is None:
            raise BadRequestError("to: a rollback names its environment")
        return start_rollback(
            context.config,
            app=data.get("app"),
            environment_name=to,
            requested_by=requested_by,
            store=store,
        )
    if "app" not in data or "version" not in data:
        raise BadRequestError("app and version are required")
    request_id = data.get("request_id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequestError("request_id: expected a string")
    return start_promotion(
        context.config,
        app=data["app"],
        version=data["version"],
        to=to,
        only=bool(data.get("only", False)),
        requested_by=requested_by,
        request_id=request_id,
        store=store,
    )
