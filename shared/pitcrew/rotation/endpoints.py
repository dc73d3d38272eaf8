"""The ``http`` strategy: a service that takes its credential over HTTP. The secret's tag
``pitcrew:endpoint`` names an entry of ``rotation.endpoints`` in the configuration; setSecret
POSTs the new value to its ``set_url`` and testSecret asks its ``test_url`` whether the value
works (any 2xx: yes). Both receive ``{"secret": NAME, "version": TOKEN, "value": VALUE}``,
with the endpoint's ``token`` as a bearer. The value is a random password, as for
``password`` (a JSON secret's ``value`` field, or the ``pitcrew:key`` one).
"""

from __future__ import annotations

from typing import Any

from pitcrew.config import RotationEndpoint
from pitcrew.errors import BadRequestError
from pitcrew.rotation.remote import call
from pitcrew.rotation.strategy import RotationContext, new_password, value_at_key, with_new_value

ENDPOINT_TAG = "pitcrew:endpoint"


class HttpStrategy:
    name = "http"

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    def create(self, context: RotationContext) -> str:
        return with_new_value(context, new_password(context), default_key="value")

    def set(self, context: RotationContext) -> None:
        endpoint = self._endpoint(context)
        self._post(context, endpoint, endpoint.set_url.get())

    def test(self, context: RotationContext) -> None:
        endpoint = self._endpoint(context)
        self._post(context, endpoint, endpoint.test_url.get())

    def _post(self, context: RotationContext, endpoint: RotationEndpoint, url: str) -> None:
        value = value_at_key(context, context.require_pending(), default_key="value")
        headers = {"Authorization": f"Bearer {endpoint.token.get()}"} if endpoint.token else {}
        body = {"secret": context.secret.name, "version": context.token, "value": value}
        call(
            "http-endpoint",
            "POST",
            url,
            json=body,
            headers=headers,
            timeout_s=endpoint.timeout_s,
            client=self._client,
        )

    @staticmethod
    def _endpoint(context: RotationContext) -> RotationEndpoint:
        name = context.tags.get(ENDPOINT_TAG)
        if not name:
            raise BadRequestError(
                f"{context.secret.name}: the http strategy needs the tag {ENDPOINT_TAG}"
            )
        endpoint = context.settings.endpoints.get(name)
        if endpoint is None:
            known = ", ".join(sorted(context.settings.endpoints)) or "none configured"
            raise BadRequestError(
                f"{context.secret.name}: tag {ENDPOINT_TAG}={name!r} names no rotation.endpoints "
                f"entry ({known})"
            )
        return endpoint
