"""``POST /webhooks/github``: GitHub's webhook deliveries (``pitcrew.github.intake``).

401 unless ``X-Hub-Signature-256`` signs the raw body with ``github.webhook_secret`` (checked
before anything is parsed; during a rotation the pending secret is accepted too); 200 for
``ping``; 202 ``{"delivery": ID, "duplicate": bool}`` once the delivery is queued, or when it
was already received; 400 naming what is missing; 503 when it could not be queued.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint, Response

from pitcrew.api.routes import ApiContext, route

if TYPE_CHECKING:
    from pitcrew.github.intake import GithubIntake

# The intake modules are imported by the route, when it is first called: a cold start that
# serves another route does not load them.


def blueprint(context: ApiContext, intake: GithubIntake | None = None) -> Blueprint:
    bp = Blueprint(__name__)
    # Built on first use: the secret, table and queue are resolved then, not at cold start.
    intakes: list[GithubIntake] = [intake] if intake is not None else []

    @route(
        bp,
        context,
        "/webhooks/github",
        methods=("POST",),
        operator=False,
        content_types=["application/json", "application/x-www-form-urlencoded"],
    )
    def github_webhook() -> Response:
        from pitcrew.github.intake import GithubIntake, unsigned_secret_error
        from pitcrew.github.webhooks import WebhookSecrets

        request = bp.current_request
        settings = context.config.github
        if settings is None or settings.webhook_secret is None:
            raise unsigned_secret_error()
        if not intakes:
            intakes.append(GithubIntake(WebhookSecrets(settings.webhook_secret)))
        body = request.raw_body
        raw = body.encode() if isinstance(body, str) else (body or b"")
        receipt = intakes[0].receive(request.headers, raw)
        return Response(body=receipt.body, status_code=receipt.status)

    return bp
