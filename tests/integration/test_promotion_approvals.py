"""``/pitcrew approve`` on a promotion's pull request from someone without write access to the
GitOps repository: refused, and the promotion still waits with its token (fake GitHub on
loopback with the real PyGithub, the stack's table in moto)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pitcrew.config import parse_config
from pitcrew.fixes.deliveries import GithubDeliveries
from pitcrew.github import connect
from pitcrew.promotions.store import AWAITING_APPROVAL, Promotion, PromotionStore, iso, new_id
from tests.support.events import load_raw
from tests.support.fakegithub import FakeGitHub

REPO = "acme/platform-gitops"


@pytest.fixture
def gh() -> Iterator[FakeGitHub]:
    fake = FakeGitHub().start()
    fake.add_repo(REPO, {"README.md": "gitops\n"})
    try:
        yield fake
    finally:
        fake.stop()


@pytest.mark.parametrize("permission", ["read", "triage", "none"])
@pytest.mark.usefixtures("stack")
def test_approve_from_a_user_without_write_permission_is_refused(
    gh: FakeGitHub, permission: str
) -> None:
    store = PromotionStore()
    promotion = Promotion(
        id=new_id(),
        app="payments-api",
        version="v1.2.0",
        target="prod",
        plan=["prod"],
        created_at=iso(time.time()),
        status=AWAITING_APPROVAL,
        environment="prod",
        approval={"environment": "prod"},
    )
    store.create(promotion)
    store.keep_token(promotion.id, "approval", "the-task-token", environment="prod")
    config = parse_config(
        {"github": {"api_url": gh.url, "token": "ghp_fake_token"}, "gitops": {"repo": REPO}}
    )
    assert config.github is not None
    github = connect(config.github, seconds_between_writes=None)
    body = f"Promote payments-api v1.2.0 to prod\n\n<!-- pitcrew:promotion={promotion.id} -->"
    number = github.create_issue(REPO, title="promote", body=body, labels=[]).number
    gh.set_permission(REPO, "drive-by", permission)
    data: dict[str, Any] = json.loads(load_raw("github/issue_comment-created.json"))
    data["comment"]["body"] = "/pitcrew approve"
    data["comment"]["user"]["login"] = "drive-by"
    data["issue"].update(number=number, body=body)
    data["repository"]["full_name"] = REPO
    deliveries = GithubDeliveries(config, github=github, publish=lambda *events: None)

    assert deliveries.handle("d-approve", "issue_comment", data) == "refused"

    (reply,) = gh.comments(REPO, number)
    assert reply.startswith("Sorry @drive-by") and "write access" in reply
    assert "the-task-token" not in reply
    still = store.get(promotion.id)
    assert still.status == AWAITING_APPROVAL
    assert still.approval == {"environment": "prod"}
    assert store.peek_token(promotion.id, "approval") == "the-task-token"
