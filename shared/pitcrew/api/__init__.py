"""The pitcrew HTTP API (the ``api`` function): a Chalice app assembled from blueprints.

``functions/api/app.py`` only calls ``create_app``; each capability adds its routes as a
blueprint here, declared with ``routes.route`` so that authentication and the mapping of
pitcrew errors to ``{"error": ...}`` responses happen the same way everywhere.
"""

from __future__ import annotations

from chalice import Chalice, Response

from pitcrew.api import alertmanager, health, incidents
from pitcrew.api import costs as cost_routes
from pitcrew.api import github as github_routes
from pitcrew.api import promotions as promotion_routes
from pitcrew.api.routes import ApiContext
from pitcrew.config import Config
from pitcrew.observability import Instruments


def create_app(config: Config, instruments: Instruments) -> Chalice:
    """The Chalice app with every blueprint registered."""
    app = Chalice(app_name="pitcrew-api")
    context = ApiContext(config=config, instruments=instruments)
    app.register_blueprint(health.blueprint(context))
    app.register_blueprint(alertmanager.blueprint(context))
    app.register_blueprint(incidents.blueprint(context))
    app.register_blueprint(cost_routes.blueprint(context))
    app.register_blueprint(github_routes.blueprint(context))
    app.register_blueprint(promotion_routes.blueprint(context))

    @app.middleware("http")
    def correlate(event, get_response):  # type: ignore[no-untyped-def]
        # Correlation ids for every log line of this request.
        request_id = (event.context or {}).get("requestId")
        instruments.logger.append_keys(request_id=request_id, path=event.path)
        try:
            return _in_pitcrew_shape(get_response(event))
        finally:
            instruments.logger.remove_keys(["request_id", "path"])

    return app


def _in_pitcrew_shape(response: Response) -> Response:
    """Chalice's own answers (405 wrong method, 415 content type, 500 unexpected error) as
    ``{"error": ...}``, like every other error of the API."""
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and set(body) == {"Code", "Message"}:
        response.body = {"error": str(body["Message"])}
    return response
