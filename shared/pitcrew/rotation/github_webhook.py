"""The ``github-webhook`` strategy: rotates the secret GitHub signs a repository webhook's
deliveries with (pitcrew's own ``github.webhook_secret``, or any other hook's).

The hook is named by the secret's tags ``pitcrew:github-repo`` (``owner/name``) and
``pitcrew:github-hook-id``, or by the fields ``repo`` and ``hook_id`` of a JSON secret (whose
``secret`` field, or the ``pitcrew:key`` one, holds the value). setSecret PATCHes the hook's
configuration (``/repos/{owner}/{repo}/hooks/{hook_id}/config``) with the pending value;
testSecret reads that configuration back (GitHub shows a set secret as ``********``) and
asks GitHub for a ping, which arrives signed with the pending value.

From setSecret until finishSecret GitHub signs with AWSPENDING while readers of the secret
still get AWSCURRENT: the webhook endpoint accepts both (``pitcrew.rotation.versions.
current_and_pending``), so no delivery is rejected.
"""

from __future__ import annotations

from typing import Any

from pitcrew.config import GithubConfig
from pitcrew.errors import BadRequestError, ConfigError, ServiceError
from pitcrew.rotation.remote import call
from pitcrew.rotation.strategy import (
    RotationContext,
    json_object,
    value_at_key,
    with_new_value,
)

REPO_TAG = "pitcrew:github-repo"
HOOK_TAG = "pitcrew:github-hook-id"
# GitHub recommends a random string of high entropy; hex keeps it safe in any header or URL.
SECRET_LENGTH = 48


class GithubWebhookStrategy:
    name = "github-webhook"

    def __init__(self, github: GithubConfig | None, client: Any | None = None) -> None:
        self._github = github
        self._client = client

    def create(self, context: RotationContext) -> str:
        value = context.store.random_password(
            PasswordLength=SECRET_LENGTH, ExcludePunctuation=True, IncludeSpace=False
        )
        return with_new_value(context, value, default_key="secret")

    def set(self, context: RotationContext) -> None:
        value = value_at_key(context, context.require_pending(), default_key="secret")
        self._request(context, "PATCH", "/config", {"secret": value})

    def test(self, context: RotationContext) -> None:
        context.require_pending()
        config = self._request(context, "GET", "/config", None)
        if not isinstance(config, dict) or not config.get("secret"):
            raise ServiceError("github", f"{context.secret.name}: the hook has no secret set")
        self._request(context, "POST", "/pings", None)

    def _request(self, context: RotationContext, method: str, suffix: str, body: Any) -> Any:
        github = self._github
        if github is None or github.token is None:
            raise ConfigError(
                ["github.token: the github-webhook rotation needs a GitHub token (repo admin)"]
            )
        repo, hook_id = hook_of(context)
        url = f"{github.api_url.get().rstrip('/')}/repos/{repo}/hooks/{hook_id}{suffix}"
        headers = {
            "Authorization": f"Bearer {github.token.get()}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        return call("github", method, url, json=body, headers=headers, client=self._client)


def hook_of(context: RotationContext) -> tuple[str, int]:
    """``(owner/repo, hook id)`` from the secret's tags, else from its JSON fields."""
    document = json_object(context.current) or {}
    repo = context.tags.get(REPO_TAG) or document.get("repo")
    hook = context.tags.get(HOOK_TAG) or document.get("hook_id")
    if not isinstance(repo, str) or repo.count("/") != 1 or not all(repo.split("/")):
        raise BadRequestError(
            f"{context.secret.name}: no repository (tag {REPO_TAG} or JSON field repo, owner/name)"
        )
    try:
        hook_id = int(str(hook))
    except ValueError:
        raise BadRequestError(
            f"{context.secret.name}: no hook id (tag {HOOK_TAG} or JSON field hook_id, a number)"
        ) from None
    return repo, hook_id
