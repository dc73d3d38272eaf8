"""Promotion pull requests in the GitOps repository, through ``pitcrew.github``: the version
bump (or the rollback) on a branch named after what it does, one pull request per branch,
merged by pitcrew where the environment allows it. Each call is safe to repeat: an existing
branch is moved, an open pull request is reused, a merged one is left merged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pitcrew.errors import ConflictError
from pitcrew.promotions.manifests import Bump, bump_version
from pitcrew.records import frozen

if TYPE_CHECKING:
    from pitcrew.github.client import GitHub

LABEL = "pitcrew-promotion"


@frozen
class PromotionPull:
    """A promotion pull request as the store and the events keep it (no change: number 0)."""

    repo: str
    number: int
    url: str | None
    branch: str
    state: str  # open | merged | closed | unchanged
    previous: str | None
    path: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "number": self.number,
            "url": self.url,
            "branch": self.branch,
            "state": self.state,
            "previous": self.previous,
            "path": self.path,
        }


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "-" for c in text).strip("-") or "x"


def branch_name(purpose: str, app: str, environment: str, version: str, promotion_id: str) -> str:
    tail = f"{_slug(version)}-{promotion_id[-6:].lower()}"
    return f"pitcrew/{purpose}/{_slug(app)}/{_slug(environment)}/{tail}"


class GitopsRepo:
    """The GitOps repository (``gitops.repo`` on ``gitops.branch``) seen by promotions."""

    def __init__(self, github: GitHub, repo: str, branch: str = "main") -> None:
        self.github = github
        self.repo = repo
        self.branch = branch

    def files_under(self, head: str, folder: str) -> dict[str, str]:
        root = folder.strip("/")
        prefix = f"{root}/" if root else ""
        found: dict[str, str] = {}
        for path in self.github.list_files(self.repo, head):
            if path.startswith(prefix) and path.endswith((".yaml", ".yml", "Kustomization")):
                content = self.github.read_file(self.repo, path, head)
                if content is not None:
                    found[path] = content.text
        return found

    def propose(
        self,
        *,
        purpose: str,
        promotion_id: str,
        app: str,
        environment: str,
        folder: str,
        version: str,
        image: str | None,
        title: str,
        body: str,
    ) -> PromotionPull:
        """Open (or find) the pull request setting ``app`` to ``version`` in ``folder``."""
        head = self.github.branch_head(self.repo, self.branch)
        bump: Bump = bump_version(self.files_under(head, folder), folder, app, version, image)
        branch = branch_name(purpose, app, environment, version, promotion_id)
        if not bump.changed:
            return PromotionPull(self.repo, 0, None, branch, "unchanged", bump.previous, bump.path)
        commit = self.github.commit_files(
            self.repo,
            parent_sha=head,
            files={bump.path: bump.new},
            message=f"{title}\n\npitcrew promotion {promotion_id}",
        )
        self.github.set_branch(self.repo, branch, commit)
        pull, _ = self.github.open_pull(
            self.repo, base=self.branch, branch=branch, title=title, body=body, labels=[LABEL]
        )
        return PromotionPull(
            self.repo, pull.number, pull.url, branch, pull.state, bump.previous, bump.path
        )

    def state(self, number: int) -> str:
        """``open``, ``closed`` or ``merged``."""
        return self.github.call(
            f"read pull request #{number} of {self.repo}",
            lambda: _state(self.github.repo(self.repo).get_pull(number)),
        )

    def merge(self, number: int, title: str) -> None:
        """Merge the pull request (already merged: nothing to do)."""

        def merge() -> None:
            pull = self.github.repo(self.repo).get_pull(number)
            if pull.merged:
                return
            if pull.state != "open":
                raise ConflictError(f"pull request #{number} of {self.repo} was closed unmerged")
            pull.merge(commit_title=title, merge_method="squash")

        self.github.call(f"merge pull request #{number} of {self.repo}", merge)

    def merge_commit(self, number: int) -> str | None:
        """The commit a merged pull request made on the branch (None while unmerged)."""

        def read() -> str | None:
            pull = self.github.repo(self.repo).get_pull(number)
            return str(pull.merge_commit_sha) if pull.merged and pull.merge_commit_sha else None

        return self.github.call(f"read pull request #{number} of {self.repo}", read)

    def head(self) -> str:
        """The branch's current commit."""
        return self.github.branch_head(self.repo, self.branch)

    def close(self, number: int) -> None:
        """Close the pull request unmerged (through its issue, as GitHub allows)."""
        self.github.call(
            f"close pull request #{number} of {self.repo}",
            lambda: self.github.repo(self.repo).get_issue(number).edit(state="closed"),
        )


def _state(pull: Any) -> str:
    return "merged" if pull.merged else str(pull.state)
