"""The one wrapper over PyGithub: a client from ``github`` config (a token, or a GitHub App
installation token minted from a JWT signed with the app's private key), the few operations
pitcrew needs, retries, and GitHub's errors turned into pitcrew's.

Every call goes through ``GitHub.call``: a 5xx, a 429, or a 403 that is a rate limit is
retried with backoff, waiting what ``Retry-After`` or ``x-ratelimit-reset`` asks for when the
response says; a wait longer than ``RetryPolicy.max_delay_s`` is not waited out but raised as
``TransientServiceError``, so the queue or EventBridge retries later. Other errors map to
``NotFoundError`` (404), ``ConflictError`` (409, 422) and ``ServiceError``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pitcrew.errors import (
    ConflictError,
    NotFoundError,
    PitcrewError,
    ServiceError,
    TransientServiceError,
)
from pitcrew.records import frozen

if TYPE_CHECKING:
    from github import Github
    from github.GithubException import GithubException
    from github.Repository import Repository

    from pitcrew.config import GithubConfig

T = TypeVar("T")
SERVICE = "github"
# A blob in a tree: a regular, non-executable file.
FILE_MODE = "100644"


@frozen
class RetryPolicy:
    """How hard to try: ``attempts`` in all, exponential backoff from ``base_delay_s``, and
    never a single wait above ``max_delay_s`` (a Lambda has a timeout; its trigger retries)."""

    attempts: int = 4
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0


@frozen
class FileContent:
    """A file at a ref: its path, text, and blob sha."""

    path: str
    text: str
    sha: str


@frozen
class IssueRef:
    """An issue or a pull request, as pitcrew needs it (``state`` is ``merged`` for a merged
    pull request; ``branch`` is a pull request's head)."""

    number: int
    url: str
    title: str
    body: str
    state: str
    labels: tuple[str, ...]
    created_at: datetime
    is_pull: bool
    branch: str | None = None


def _aware(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _issue_ref(issue: Any) -> IssueRef:
    is_pull = issue.pull_request is not None
    state = issue.state
    if is_pull and state == "closed" and issue.pull_request.merged_at is not None:
        state = "merged"
    return IssueRef(
        number=issue.number,
        url=issue.html_url,
        title=issue.title or "",
        body=issue.body or "",
        state=state,
        labels=tuple(label.name for label in issue.labels),
        created_at=_aware(issue.created_at),
        is_pull=is_pull,
    )


def _pull_ref(pull: Any) -> IssueRef:
    return IssueRef(
        number=pull.number,
        url=pull.html_url,
        title=pull.title or "",
        body=pull.body or "",
        state="merged" if pull.merged else pull.state,
        labels=tuple(label.name for label in pull.labels),
        created_at=_aware(pull.created_at),
        is_pull=True,
        branch=pull.head.ref,
    )


PullRef = IssueRef


class GitHub:
    """pitcrew's GitHub operations over a PyGithub ``Github`` (injected; see ``connect``).

    ``sleep`` and ``clock`` (epoch seconds) are injectable so tests of the retry policy do
    not wait.
    """

    def __init__(
        self,
        api: Github,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self._repos: dict[str, Repository] = {}
        self._trees: dict[tuple[str, str], tuple[str, ...]] = {}

    # -- the retry and error boundary --------------------------------------------------------
    def call(self, what: str, operation: Callable[[], T]) -> T:
        """Run one GitHub operation (which may make several requests), retrying what is worth
        retrying; raise pitcrew's error for anything else, naming ``what`` was attempted."""
        from github.GithubException import GithubException
        from requests.exceptions import RequestException

        attempt = 0
        while True:
            attempt += 1
            try:
                return operation()
            except GithubException as exc:
                delay = self._retry_delay(exc, attempt)
                if delay is None or attempt >= self.retry.attempts:
                    raise _translate(exc, what, retried=attempt > 1) from exc
            except RequestException as exc:
                delay = self._backoff(attempt)
                if attempt >= self.retry.attempts:
                    raise TransientServiceError(
                        SERVICE, f"{what}: cannot reach GitHub ({type(exc).__name__})"
                    ) from exc
            self.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        return min(self.retry.base_delay_s * 2 ** (attempt - 1), self.retry.max_delay_s)

    def _retry_delay(self, exc: GithubException, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None when retrying cannot help (or the
        wait asked for is longer than the policy allows)."""
        headers = {str(k).lower(): str(v) for k, v in (exc.headers or {}).items()}
        status = exc.status
        if status >= 500:
            delay = _seconds(headers.get("retry-after"))
            return (
                min(delay, self.retry.max_delay_s) if delay is not None else self._backoff(attempt)
            )
        if not _is_rate_limit(status, headers, exc.data):
            return None
        delay = _seconds(headers.get("retry-after"))
        if delay is None and headers.get("x-ratelimit-remaining") == "0":
            reset = _seconds(headers.get("x-ratelimit-reset"))
            delay = max(reset - self.clock(), 0.0) + 1.0 if reset is not None else None
        if delay is None:
            # A secondary rate limit without a hint: GitHub asks for at least a minute.
            delay = max(self._backoff(attempt), 60.0)
        return delay if delay <= self.retry.max_delay_s else None

    # -- repositories, files, trees ----------------------------------------------------------
    def repo(self, full_name: str) -> Repository:
        found = self._repos.get(full_name)
        if found is None:
            found = self._repos[full_name] = self.api.get_repo(full_name)
        return found

    def branch_head(self, repo: str, branch: str) -> str:
        """The commit sha at the tip of ``branch``."""
        # PyGithub objects are lazy: read what is needed inside the call, so that the request
        # happens under its retries and error mapping.
        return self.call(
            f"read branch {branch} of {repo}",
            lambda: str(self.repo(repo).get_git_ref(f"heads/{branch}").object.sha),
        )

    def list_files(self, repo: str, commit_sha: str) -> tuple[str, ...]:
        """Every file path in the tree of a commit (cached per commit)."""
        key = (repo, commit_sha)
        if key not in self._trees:

            def read() -> tuple[str, ...]:
                tree = self.repo(repo).get_git_tree(commit_sha, recursive=True)
                return tuple(e.path for e in tree.tree if e.type == "blob")

            self._trees[key] = self.call(f"list the files of {repo}@{commit_sha[:12]}", read)
        return self._trees[key]

    def read_file(self, repo: str, path: str, ref: str) -> FileContent | None:
        """The file at ``ref``, or None when there is none (or it is a directory, or not
        UTF-8 text)."""

        def read() -> FileContent | None:
            handle = self.repo(repo)
            content = handle.get_contents(path, ref=ref)
            if isinstance(content, list) or content.type != "file":
                return None
            if content.encoding == "base64":
                data = content.decoded_content
            else:  # above 1 MB the contents API leaves the content out ("encoding": "none")
                data = base64.b64decode(handle.get_git_blob(content.sha).content)
            try:
                text = data.decode()
            except UnicodeDecodeError:
                return None  # not text pitcrew can change
            return FileContent(path=path, text=text, sha=content.sha)

        try:
            return self.call(f"read {path} from {repo}@{ref}", read)
        except NotFoundError:
            return None

    def commit_files(
        self, repo: str, *, parent_sha: str, files: Mapping[str, str], message: str
    ) -> str:
        """One commit on top of ``parent_sha`` writing ``files`` (path -> text); its sha.
        Through the Git Data API, so several files are still a single commit."""
        from github.InputGitTreeElement import InputGitTreeElement

        def commit() -> str:
            handle = self.repo(repo)
            parent = handle.get_git_commit(parent_sha)
            elements = [
                InputGitTreeElement(path=path, mode=FILE_MODE, type="blob", content=text)
                for path, text in files.items()
            ]
            tree = handle.create_git_tree(elements, base_tree=parent.tree)
            return str(handle.create_git_commit(message, tree, [parent]).sha)

        return self.call(f"commit {', '.join(files)} to {repo}", commit)

    def set_branch(self, repo: str, branch: str, sha: str) -> None:
        """Point ``branch`` at ``sha``: created, or moved there if it already exists (a
        branch pitcrew owns, left by an earlier attempt)."""
        try:
            self.call(
                f"create branch {branch} in {repo}",
                lambda: self.repo(repo).create_git_ref(f"refs/heads/{branch}", sha),
            )
        except ConflictError:

            def move() -> None:
                ref = self.repo(repo).get_git_ref(f"heads/{branch}")
                # A lazy ref knows only the read URL (git/ref/...): reading it first gives
                # it the one GitHub updates through (git/refs/...).
                assert ref.object.sha
                ref.edit(sha, force=True)

            self.call(f"move branch {branch} in {repo}", move)

    # -- pull requests, issues, comments -----------------------------------------------------
    def open_pull(
        self,
        repo: str,
        *,
        base: str,
        branch: str,
        title: str,
        body: str,
        labels: Iterable[str] = (),
    ) -> tuple[IssueRef, bool]:
        """Open a pull request from ``branch`` into ``base``, labelled. Returns it and whether
        it is new: when one is already open from that branch, that one is returned."""
        wanted = list(labels)
        try:
            pull = self.call(
                f"open a pull request from {branch} in {repo}",
                lambda: self.repo(repo).create_pull(base=base, head=branch, title=title, body=body),
            )
        except ConflictError:
            existing = self.open_pulls_from(repo, branch)
            if not existing:
                raise
            return existing[0], False
        if wanted:
            self.call(
                f"label pull request #{pull.number} in {repo}",
                lambda: pull.as_issue().add_to_labels(*wanted),
            )
        return replace(_pull_ref(pull), labels=tuple(wanted)), True

    def open_pulls_from(self, repo: str, branch: str) -> list[IssueRef]:
        owner = repo.split("/", 1)[0]
        return self.call(
            f"list pull requests from {branch} in {repo}",
            lambda: [
                _pull_ref(p)
                for p in self.repo(repo).get_pulls(state="open", head=f"{owner}:{branch}")
            ],
        )

    def issues(
        self,
        repo: str,
        *,
        label: str,
        state: str = "open",
        since: datetime | None = None,
    ) -> list[IssueRef]:
        """Issues and pull requests with ``label`` (``since``: updated since then)."""

        def listing() -> list[IssueRef]:
            options: dict[str, Any] = {"state": state, "labels": [label]}
            if since is not None:
                options["since"] = since
            return [_issue_ref(i) for i in self.repo(repo).get_issues(**options)]

        return self.call(f"list issues labelled {label} in {repo}", listing)

    def issue(self, repo: str, number: int) -> IssueRef:
        return self.call(
            f"read issue #{number} of {repo}", lambda: _issue_ref(self.repo(repo).get_issue(number))
        )

    def create_issue(
        self, repo: str, *, title: str, body: str, labels: Iterable[str] = ()
    ) -> IssueRef:
        names = list(labels)
        return self.call(
            f"open an issue in {repo}",
            lambda: _issue_ref(self.repo(repo).create_issue(title=title, body=body, labels=names)),
        )

    def comment(self, repo: str, number: int, body: str) -> str:
        """Comment on an issue or pull request; the comment's URL."""
        created = self.call(
            f"comment on #{number} of {repo}",
            lambda: self.repo(repo).get_issue(number).create_comment(body),
        )
        return str(created.html_url)

    def permission(self, repo: str, user: str) -> str:
        """``user``'s permission on ``repo``: admin, write (maintain included), read or none."""
        try:
            return self.call(
                f"read {user}'s permission on {repo}",
                lambda: str(self.repo(repo).get_collaborator_permission(user)),
            )
        except NotFoundError:
            return "none"


def _seconds(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _message(data: Any) -> str:
    if isinstance(data, Mapping):
        message = str(data.get("message") or "")
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            details = [
                str(e.get("message") or e.get("code") or e) if isinstance(e, Mapping) else str(e)
                for e in errors
            ]
            message = f"{message} ({'; '.join(details)})"
        return message
    return str(data or "")


def _is_rate_limit(status: int, headers: Mapping[str, str], data: Any) -> bool:
    if status == 429:
        return True
    if status != 403:
        return False
    message = _message(data).lower()
    return (
        "retry-after" in headers
        or headers.get("x-ratelimit-remaining") == "0"
        or "rate limit" in message
    )


def _translate(exc: GithubException, what: str, *, retried: bool) -> PitcrewError:
    status = exc.status
    message = _message(exc.data) or f"HTTP {status}"
    text = f"{what}: {status} {message}"
    headers = {str(k).lower(): str(v) for k, v in (exc.headers or {}).items()}
    if status >= 500 or _is_rate_limit(status, headers, exc.data):
        suffix = " (after retries)" if retried else " (the wait asked for is too long)"
        return TransientServiceError(SERVICE, text + suffix)
    if status == 404:
        return NotFoundError(f"{SERVICE}: {text}")
    if status in (409, 422):
        return ConflictError(f"{SERVICE}: {text}")
    return ServiceError(SERVICE, text)


def connect(
    config: GithubConfig,
    *,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    timeout_s: int = 15,
    seconds_between_writes: float | None = 0.5,
) -> GitHub:
    """A ``GitHub`` for ``config`` (``github`` section): a token, or a GitHub App installation
    token that PyGithub mints (JWT RS256 with the app's private key) and renews.

    PyGithub's own retrying is off: ``GitHub.call`` retries, with the policy above. Writes
    are spaced by ``seconds_between_writes``, as GitHub asks of integrations that write in
    bursts (None: not spaced).
    """
    from github import Auth, Github

    auth: Auth.Auth
    if config.app is not None:
        app = Auth.AppAuth(config.app.app_id, config.app.private_key.get())
        auth = Auth.AppInstallationAuth(app, config.app.installation_id)
    elif config.token is not None:
        auth = Auth.Token(config.token.get())
    else:  # the config validation requires one of them
        raise ServiceError(SERVICE, "github needs a token or an app")
    api = Github(
        base_url=config.api_url.get().rstrip("/"),
        auth=auth,
        timeout=timeout_s,
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=seconds_between_writes,
        lazy=True,
    )
    return GitHub(api, retry=retry, sleep=sleep, clock=clock)
