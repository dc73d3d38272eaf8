"""``POST /webhooks/alertmanager``: Alertmanager's webhook (payload version 4).

401 without the token of ``alertmanager.token`` (Bearer, or Basic with it as the password),
413 above ``alertmanager.max_body_bytes``, 400 naming the problem for a body that is not a
version 4 payload, 503 when the alerts could not be enqueued (Alertmanager retries), else 202
``{"accepted": N, "duplicates": M}``. The slow work happens in ``diagnose``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint, Response

from pitcrew.api.routes import ApiContext, route
from pitcrew.errors import UnauthorizedError

if TYPE_CHECKING:
    from pitcrew.incidents.intake import AlertIntake

# The intake modules are imported by the route, when it is first called: a cold start that
# serves another route does not load them.


def blueprint(context: ApiContext, intake: AlertIntake | None = None) -> Blueprint:
    bp = Blueprint(__name__)
    # Built on first use: the queue's URL and the tables come from the environment.
    intakes: list[AlertIntake] = [intake] if intake is not None else []

    @route(
        bp,
        context,
        "/webhooks/alertmanager",
        methods=("POST",),
        operator=False,
        # Alertmanager sends application/json; anything else still gets pitcrew's own 401/400.
        content_types=[
            "application/json",
            "text/plain",
            "application/octet-stream",
            "application/x-www-form-urlencoded",
        ],
    )
    def alertmanager_webhook() -> Response:
        from pitcrew.incidents.alerts import parse_webhook
        from pitcrew.incidents.intake import AlertIntake, authenticate, check_size

        request = bp.current_request
        settings = context.config.alertmanager
        if settings is None:
            raise UnauthorizedError(
                "the Alertmanager webhook is disabled: set alertmanager.token in the config"
            )
        authenticate(request.headers, settings.token.get())
        body = request.raw_body or b""
        check_size(request.headers, body, settings.max_body_bytes)
        webhook = parse_webhook(body)
        if not intakes:
            intakes.append(AlertIntake(logger=context.instruments.logger))
        result = intakes[0].receive(webhook)
        return Response(body=result.as_dict(), status_code=202)

    return bp
