"""``GET /incidents[?status=open|resolved|all][&limit=N]`` and ``GET /incidents/{id}``: the
incidents in DESIGN.md's shape, for operators."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice import Blueprint

from pitcrew.api.routes import ApiContext, query_limit, route
from pitcrew.errors import BadRequestError

if TYPE_CHECKING:
    from pitcrew.incidents.store import IncidentStore

# The store module is imported by the routes, when first called: a cold start that serves
# another route does not load it.

DEFAULT_LIMIT = 100


def blueprint(context: ApiContext, store: IncidentStore | None = None) -> Blueprint:
    bp = Blueprint(__name__)
    # Built on first use: the table's name comes from the environment.
    stores: list[IncidentStore] = [store] if store is not None else []

    def incidents() -> IncidentStore:
        if not stores:
            from pitcrew.incidents.store import IncidentStore

            stores.append(IncidentStore())
        return stores[0]

    @route(bp, context, "/incidents")
    def list_incidents() -> dict[str, Any]:
        from pitcrew.incidents.store import LIST_STATUSES

        query: dict[str, str] = dict(bp.current_request.query_params or {})
        unknown = sorted(set(query) - {"status", "limit"})
        if unknown:
            raise BadRequestError(
                f"unknown query parameter(s) {', '.join(unknown)}: use status and limit"
            )
        status = query.get("status", "open")
        if status not in LIST_STATUSES:
            raise BadRequestError(
                f"status: expected one of {', '.join(LIST_STATUSES)}, got {status!r}"
            )
        limit = _limit(query.get("limit"))
        found = incidents().list(status=status, limit=limit)
        return {"incidents": [incident.as_api() for incident in found], "count": len(found)}

    @route(bp, context, "/incidents/{incident_id}")
    def get_incident(incident_id: str) -> dict[str, Any]:
        return incidents().get(incident_id).as_api()

    return bp


def _limit(raw: str | None) -> int:
    from pitcrew.incidents.store import MAX_LIST

    return DEFAULT_LIMIT if raw is None else query_limit(raw, MAX_LIST)
