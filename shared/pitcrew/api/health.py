"""``GET /healthz``: liveness of the API, with no authentication."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from pitcrew import __version__
from pitcrew.api.routes import ApiContext, route


def blueprint(context: ApiContext) -> Blueprint:
    bp = Blueprint(__name__)

    @route(bp, context, "/healthz", operator=False)
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    return bp
