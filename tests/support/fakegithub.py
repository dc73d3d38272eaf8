"""A fake GitHub REST API on 127.0.0.1 (built on ``FakeService``) with in-memory repositories,
answering in the shapes of GitHub's documented responses so the real PyGithub parses them.

Covered: repositories; git refs, commits, trees (``recursive=1``) and blobs; contents (GET,
PUT with base64 and sha); pulls (create, list with ``state``/``head``/``base``, get, merge);
issues (create, list with ``state``/``labels``/``since``, get, edit), labels, comments;
collaborator permission; hooks; GitHub App installation tokens (the JWT is verified with the
app's public key, RS256). Issues and pull requests share one number sequence, as on GitHub.

Test helpers: ``add_repo`` (files on the default branch), ``files`` (a branch's files),
``pulls``/``issues``/``comments``, ``merge``, ``set_permission``, ``fail`` (the next N
matching requests get a given status and headers: 502s, secondary rate limits), and ``now``
(the clock that stamps ``created_at``).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from tests.support.fakehttp import FakeService, Reply, Request

REPO = r"^/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
DOCS = "https://docs.github.com/rest"
CONTENTS_MAX_BYTES = 1024 * 1024


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sha(kind: str, data: bytes) -> str:
    return hashlib.sha1(kind.encode() + b"\0" + data).hexdigest()  # noqa: S324 - git's own ids


def error(status: int, message: str, **extra: Any) -> Reply:
    return Reply(status, {"message": message, "documentation_url": DOCS, **extra})


@dataclass
class Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    times: int


@dataclass
class FakeRepo:
    owner: str
    name: str
    default_branch: str = "main"
    blobs: dict[str, bytes] = field(default_factory=dict)
    trees: dict[str, dict[str, str]] = field(default_factory=dict)  # sha -> path -> blob sha
    commits: dict[str, dict[str, Any]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # "heads/main" -> commit sha
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    permissions: dict[str, str] = field(default_factory=dict)
    hooks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def put_blob(self, data: bytes) -> str:
        sha = _sha("blob", data)
        self.blobs[sha] = data
        return sha

    def put_tree(self, entries: Mapping[str, str]) -> str:
        sha = _sha("tree", repr(sorted(entries.items())).encode())
        self.trees[sha] = dict(entries)
        return sha

    def put_commit(self, tree: str, parents: list[str], message: str, when: datetime) -> str:
        sha = _sha("commit", f"{tree}{parents}{message}{when.isoformat()}".encode())
        self.commits[sha] = {"tree": tree, "parents": parents, "message": message, "at": when}
        return sha

    def resolve(self, ref: str) -> str | None:
        """A commit sha for a branch name, ``heads/...`` ref or sha."""
        if ref in self.commits:
            return ref
        return self.refs.get(ref) or self.refs.get(f"heads/{ref}")

    def files_at(self, ref: str) -> dict[str, str]:
        commit = self.resolve(ref)
        if commit is None:
            raise KeyError(ref)
        tree = self.trees[self.commits[commit]["tree"]]
        return {path: self.blobs[sha].decode() for path, sha in tree.items()}


class FakeGitHub:
    """The fake GitHub server. ``tokens``: accepted tokens (``token X`` or ``Bearer X``)."""

    def __init__(self, tokens: tuple[str, ...] = ("ghp_fake_token",)) -> None:
        self.service = FakeService("github")
        self.tokens = set(tokens)
        self.repos: dict[str, FakeRepo] = {}
        self.failures: list[Failure] = []
        self.app_keys: dict[int, Any] = {}  # app id -> RSA public key
        self.installations: dict[int, int] = {}  # installation id -> app id
        self.minted: list[str] = []
        self.clock = lambda: datetime.now(UTC)
        self._ids = itertools.count(1000)
        self._register()

    # -- lifecycle and test helpers --------------------------------------------------------
    def start(self) -> FakeGitHub:
        self.service.start()
        # Buffer each response so its headers and body leave in one write: written apart,
        # Nagle's algorithm and the client's delayed ACK cost ~40 ms per request, and a fix
        # pull request makes dozens.
        server = self.service._server
        assert server is not None
        server.RequestHandlerClass.wbufsize = -1  # type: ignore[attr-defined]
        return self

    def stop(self) -> None:
        self.service.stop()

    @property
    def url(self) -> str:
        return self.service.url

    def now(self) -> datetime:
        return self.clock()

    def add_repo(
        self, full_name: str, files: Mapping[str, str], *, branch: str = "main"
    ) -> FakeRepo:
        owner, name = full_name.split("/")
        repo = FakeRepo(owner=owner, name=name, default_branch=branch)
        tree = repo.put_tree({path: repo.put_blob(text.encode()) for path, text in files.items()})
        repo.refs[f"heads/{branch}"] = repo.put_commit(tree, [], "initial", self.now())
        self.repos[full_name] = repo
        return repo

    def repo(self, full_name: str) -> FakeRepo:
        return self.repos[full_name]

    def files(self, full_name: str, ref: str = "main") -> dict[str, str]:
        return self.repos[full_name].files_at(ref)

    def pulls(self, full_name: str) -> list[dict[str, Any]]:
        return [i for i in self.repos[full_name].issues.values() if "pull" in i]

    def issues(self, full_name: str) -> list[dict[str, Any]]:
        return [i for i in self.repos[full_name].issues.values() if "pull" not in i]

    def comments(self, full_name: str, number: int) -> list[str]:
        return [c["body"] for c in self.repos[full_name].comments.get(number, [])]

    def set_permission(self, full_name: str, user: str, permission: str) -> None:
        self.repos[full_name].permissions[user] = permission

    def add_app(self, app_id: int, installation_id: int, public_key: Any) -> None:
        self.app_keys[app_id] = public_key
        self.installations[installation_id] = app_id

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        message: str = "Server Error",
    ) -> None:
        """The next ``times`` requests matching get ``status`` (a 502, a rate limit...)."""
        self.failures.append(
            Failure(
                method.upper(),
                re.compile(path_regex),
                status,
                dict(headers or {}),
                {"message": message, "documentation_url": DOCS},
                times,
            )
        )

    def merge(self, full_name: str, number: int, by: str = "marco-platform") -> dict[str, Any]:
        """Merge a pull request as a user would on GitHub (the base branch moves)."""
        repo = self.repos[full_name]
        issue = repo.issues[number]
        pull = issue["pull"]
        base_sha = repo.refs[f"heads/{pull['base']}"]
        head_sha = repo.refs[f"heads/{pull['head']}"]
        tree = repo.commits[head_sha]["tree"]
        merge_sha = repo.put_commit(tree, [base_sha, head_sha], f"Merge #{number}", self.now())
        repo.refs[f"heads/{pull['base']}"] = merge_sha
        issue.update(state="closed", closed_at=self.now())
        pull.update(merged=True, merged_at=self.now(), merged_by=by, merge_commit_sha=merge_sha)
        return self._pull_json(repo, issue)

    # -- JSON shapes -------------------------------------------------------------------------
    def _api(self, path: str) -> str:
        return f"{self.url}{path}"

    def _user(self, login: str) -> dict[str, Any]:
        return {
            "login": login,
            "id": abs(hash(login)) % 10_000_000,
            "node_id": f"U_{login}",
            "type": "Bot" if login.endswith("[bot]") else "User",
            "url": self._api(f"/users/{login}"),
            "html_url": f"https://github.com/{login}",
            "site_admin": False,
        }

    def _repo_json(self, repo: FakeRepo) -> dict[str, Any]:
        base = f"/repos/{repo.full_name}"
        return {
            "id": abs(hash(repo.full_name)) % 10_000_000,
            "node_id": f"R_{repo.name}",
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": {**self._user(repo.owner), "type": "Organization"},
            "private": True,
            "html_url": f"https://github.com/{repo.full_name}",
            "url": self._api(base),
            "default_branch": repo.default_branch,
            "permissions": {"admin": False, "push": True, "pull": True},
        }

    def _ref_json(self, repo: FakeRepo, ref: str) -> dict[str, Any]:
        sha = repo.refs[ref]
        return {
            "ref": f"refs/{ref}",
            "node_id": f"REF_{ref}",
            "url": self._api(f"/repos/{repo.full_name}/git/refs/{ref}"),
            "object": {
                "type": "commit",
                "sha": sha,
                "url": self._api(f"/repos/{repo.full_name}/git/commits/{sha}"),
            },
        }

    def _commit_json(self, repo: FakeRepo, sha: str) -> dict[str, Any]:
        commit = repo.commits[sha]
        person = {"name": "pitcrew", "email": "pitcrew@example.com", "date": _iso(commit["at"])}
        base = f"/repos/{repo.full_name}/git"
        return {
            "sha": sha,
            "node_id": f"C_{sha[:8]}",
            "url": self._api(f"{base}/commits/{sha}"),
            "html_url": f"https://github.com/{repo.full_name}/commit/{sha}",
            "author": person,
            "committer": person,
            "message": commit["message"],
            "tree": {"sha": commit["tree"], "url": self._api(f"{base}/trees/{commit['tree']}")},
            "parents": [
                {"sha": p, "url": self._api(f"{base}/commits/{p}"), "html_url": ""}
                for p in commit["parents"]
            ],
            "verification": {"verified": False, "reason": "unsigned", "signature": None},
        }

    def _tree_json(self, repo: FakeRepo, sha: str) -> dict[str, Any]:
        base = f"/repos/{repo.full_name}/git"
        entries = [
            {
                "path": path,
                "mode": "100644",
                "type": "blob",
                "sha": blob,
                "size": len(repo.blobs[blob]),
                "url": self._api(f"{base}/blobs/{blob}"),
            }
            for path, blob in sorted(repo.trees[sha].items())
        ]
        return {
            "sha": sha,
            "url": self._api(f"{base}/trees/{sha}"),
            "tree": entries,
            "truncated": False,
        }

    def _content_json(self, repo: FakeRepo, path: str, blob: str, ref: str) -> dict[str, Any]:
        data = repo.blobs[blob]
        url = self._api(f"/repos/{repo.full_name}/contents/{path}?ref={ref}")
        # Above 1 MB GitHub leaves the content out ("encoding": "none"); the blobs API or
        # the raw media type give it.
        small = len(data) <= CONTENTS_MAX_BYTES
        return {
            "type": "file",
            "encoding": "base64" if small else "none",
            "size": len(data),
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "content": base64.encodebytes(data).decode() if small else "",
            "sha": blob,
            "url": url,
            "git_url": self._api(f"/repos/{repo.full_name}/git/blobs/{blob}"),
            "html_url": f"https://github.com/{repo.full_name}/blob/{ref}/{path}",
            "download_url": None,
            "_links": {"self": url, "git": None, "html": None},
        }

    def _label_json(self, repo: FakeRepo, name: str) -> dict[str, Any]:
        label = repo.labels.setdefault(
            name, {"id": next(self._ids), "name": name, "color": "5319e7", "description": None}
        )
        return {
            **label,
            "node_id": f"LA_{label['id']}",
            "url": self._api(f"/repos/{repo.full_name}/labels/{name}"),
            "default": False,
        }

    def _issue_json(self, repo: FakeRepo, issue: dict[str, Any]) -> dict[str, Any]:
        number = issue["number"]
        base = f"/repos/{repo.full_name}"
        answer = {
            "url": self._api(f"{base}/issues/{number}"),
            "repository_url": self._api(base),
            "comments_url": self._api(f"{base}/issues/{number}/comments"),
            "html_url": f"https://github.com/{repo.full_name}/"
            + ("pull" if "pull" in issue else "issues")
            + f"/{number}",
            "id": issue["id"],
            "node_id": f"I_{issue['id']}",
            "number": number,
            "title": issue["title"],
            "user": self._user(issue["user"]),
            "labels": [self._label_json(repo, n) for n in issue["labels"]],
            "state": issue["state"],
            "locked": False,
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "comments": len(repo.comments.get(number, [])),
            "created_at": _iso(issue["created_at"]),
            "updated_at": _iso(issue["updated_at"]),
            "closed_at": _iso(issue["closed_at"]) if issue.get("closed_at") else None,
            "author_association": "NONE",
            "body": issue["body"],
            "state_reason": None,
        }
        if "pull" in issue:
            merged_at = issue["pull"].get("merged_at")
            answer["pull_request"] = {
                "url": self._api(f"{base}/pulls/{number}"),
                "html_url": answer["html_url"],
                "diff_url": answer["html_url"] + ".diff",
                "patch_url": answer["html_url"] + ".patch",
                "merged_at": _iso(merged_at) if merged_at else None,
            }
        return answer

    def _pull_json(self, repo: FakeRepo, issue: dict[str, Any]) -> dict[str, Any]:
        pull = issue["pull"]
        number = issue["number"]
        base = f"/repos/{repo.full_name}"
        head_sha = repo.refs.get(f"heads/{pull['head']}", "")
        return {
            **{k: v for k, v in self._issue_json(repo, issue).items() if k != "pull_request"},
            "url": self._api(f"{base}/pulls/{number}"),
            "issue_url": self._api(f"{base}/issues/{number}"),
            "html_url": f"https://github.com/{repo.full_name}/pull/{number}",
            "merged": bool(pull.get("merged")),
            "merged_at": _iso(pull["merged_at"]) if pull.get("merged_at") else None,
            "merged_by": self._user(pull["merged_by"]) if pull.get("merged_by") else None,
            "merge_commit_sha": pull.get("merge_commit_sha"),
            "mergeable": True,
            "draft": False,
            "head": {
                "label": f"{repo.owner}:{pull['head']}",
                "ref": pull["head"],
                "sha": head_sha,
                "user": self._user(repo.owner),
                "repo": self._repo_json(repo),
            },
            "base": {
                "label": f"{repo.owner}:{pull['base']}",
                "ref": pull["base"],
                "sha": repo.refs.get(f"heads/{pull['base']}", ""),
                "user": self._user(repo.owner),
                "repo": self._repo_json(repo),
            },
            "commits": 1,
            "changed_files": 1,
        }

    def _comment_json(self, repo: FakeRepo, number: int, comment: dict[str, Any]) -> dict[str, Any]:
        base = f"/repos/{repo.full_name}"
        return {
            "id": comment["id"],
            "node_id": f"IC_{comment['id']}",
            "url": self._api(f"{base}/issues/comments/{comment['id']}"),
            "html_url": f"https://github.com/{repo.full_name}/issues/{number}"
            f"#issuecomment-{comment['id']}",
            "issue_url": self._api(f"{base}/issues/{number}"),
            "body": comment["body"],
            "user": self._user(comment["user"]),
            "created_at": _iso(comment["created_at"]),
            "updated_at": _iso(comment["created_at"]),
            "author_association": "NONE",
        }

    # -- request handling --------------------------------------------------------------------
    def _caller(self, request: Request) -> str | None:
        """The token's owner, or None when the request is not authenticated."""
        auth = request.header("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() in ("token", "bearer") and token in self.tokens:
            return "pitcrew[bot]"
        return None

    def _guard(self, handler: Any) -> Any:
        def guarded(request: Request) -> Reply:
            for failure in self.failures:
                if (
                    failure.times > 0
                    and failure.method == request.method
                    and failure.pattern.search(request.path)
                ):
                    failure.times -= 1
                    return Reply(failure.status, failure.body, failure.headers)
            if not request.path.startswith("/app/") and self._caller(request) is None:
                return error(401, "Bad credentials")
            params = {k: unquote(v) for k, v in request.params.items()}
            repo = None
            if "owner" in params:
                repo = self.repos.get(f"{params['owner']}/{params['repo']}")
                if repo is None:
                    return error(404, "Not Found")
            return handler(request, repo, params)

        return guarded

    def _on(self, method: str, pattern: str) -> Any:
        def register(handler: Any) -> Any:
            self.service.route(method, pattern)(self._guard(handler))
            return handler

        return register

    def _register(self) -> None:
        on = self._on

        @on("POST", r"^/app/installations/(?P<installation>\d+)/access_tokens$")
        def access_token(request: Request, _repo: Any, params: dict[str, str]) -> Reply:
            import jwt

            installation = int(params["installation"])
            app_id = self.installations.get(installation)
            scheme, _, token = (request.header("Authorization") or "").partition(" ")
            if app_id is None or scheme.lower() != "bearer":
                return error(401, "A JSON web token could not be decoded")
            try:
                claims = jwt.decode(token, self.app_keys[app_id], algorithms=["RS256"])
            except jwt.PyJWTError as exc:
                return error(401, f"A JSON web token could not be decoded: {exc}")
            if str(claims.get("iss")) != str(app_id):
                return error(401, "'Issuer' claim ('iss') must be the app id")
            minted = f"ghs_installation_{installation}_{len(self.minted)}"
            self.minted.append(minted)
            self.tokens.add(minted)
            # Installation tokens expire by the real clock, whatever the test's clock says.
            expires = datetime.fromtimestamp(datetime.now(UTC).timestamp() + 3600, UTC)
            return Reply(
                201,
                {
                    "token": minted,
                    "expires_at": _iso(expires),
                    "permissions": {
                        "contents": "write",
                        "pull_requests": "write",
                        "issues": "write",
                    },
                    "repository_selection": "all",
                },
            )

        @on("GET", REPO + r"$")
        def get_repo(_request: Request, repo: FakeRepo, _params: dict[str, str]) -> Reply:
            return Reply(200, self._repo_json(repo))

        @on("GET", REPO + r"/git/ref/(?P<ref>.+)$")
        def get_ref(_request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            if params["ref"] not in repo.refs:
                return error(404, "Not Found")
            return Reply(200, self._ref_json(repo, params["ref"]))

        @on("POST", REPO + r"/git/refs$")
        def create_ref(request: Request, repo: FakeRepo, _params: dict[str, str]) -> Reply:
            body = request.json()
            ref = str(body.get("ref", ""))
            if not ref.startswith("refs/") or body.get("sha") not in repo.commits:
                return error(422, "Reference update failed")
            name = ref.removeprefix("refs/")
            if name in repo.refs:
                return error(422, "Reference already exists")
            repo.refs[name] = body["sha"]
            return Reply(201, self._ref_json(repo, name))

        @on("PATCH", REPO + r"/git/refs/(?P<ref>.+)$")
        def update_ref(request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            body = request.json()
            name = params["ref"]
            if name not in repo.refs or body.get("sha") not in repo.commits:
                return error(422, "Reference does not exist")
            current = repo.refs[name]
            if not body.get("force") and current not in repo.commits[body["sha"]]["parents"]:
                return error(422, "Update is not a fast forward")
            repo.refs[name] = body["sha"]
            return Reply(200, self._ref_json(repo, name))

        @on("GET", REPO + r"/git/commits/(?P<sha>[0-9a-f]+)$")
        def get_commit(_request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            if params["sha"] not in repo.commits:
                return error(404, "Not Found")
            return Reply(200, self._commit_json(repo, params["sha"]))

        @on("POST", REPO + r"/git/commits$")
        def create_commit(request: Request, repo: FakeRepo, _params: dict[str, str]) -> Reply:
            body = request.json()
            parents = list(body.get("parents") or [])
            if body.get("tree") not in repo.trees or any(p not in repo.commits for p in parents):
                return error(422, "Tree or parent not found")
            sha = repo.put_commit(body["tree"], parents, str(body.get("message", "")), self.now())
            return Reply(201, self._commit_json(repo, sha))

        @on("GET", REPO + r"/git/trees/(?P<sha>[^/]+)$")
        def get_tree(request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            sha = params["sha"]
            if sha not in repo.trees:
                commit = repo.resolve(sha)
                if commit is None:
                    return error(404, "Not Found")
                sha = repo.commits[commit]["tree"]
            return Reply(200, self._tree_json(repo, sha))

        @on("POST", REPO + r"/git/trees$")
        def create_tree(request: Request, repo: FakeRepo, _params: dict[str, str]) -> Reply:
            body = request.json()
            entries: dict[str, str] = {}
            if body.get("base_tree"):
                if body["base_tree"] not in repo.trees:
                    return error(422, "base_tree not found")
                entries = dict(repo.trees[body["base_tree"]])
            for element in body.get("tree") or []:
                path = element["path"]
                if element.get("sha", "") is None:
                    entries.pop(path, None)
                elif "content" in element:
                    entries[path] = repo.put_blob(element["content"].encode())
                elif element.get("sha") in repo.blobs:
                    entries[path] = element["sha"]
                else:
                    return error(422, f"tree.sha {element.get('sha')} is not a valid blob")
            return Reply(201, self._tree_json(repo, repo.put_tree(entries)))

        @on("GET", REPO + r"/git/blobs/(?P<sha>[0-9a-f]+)$")
        def get_blob(_request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            data = repo.blobs.get(params["sha"])
            if data is None:
                return error(404, "Not Found")
            return Reply(
                200,
                {
                    "sha": params["sha"],
                    "size": len(data),
                    "encoding": "base64",
                    "content": base64.encodebytes(data).decode(),
                    "url": self._api(f"/repos/{repo.full_name}/git/blobs/{params['sha']}"),
                },
            )

        @on("GET", REPO + r"/contents/(?P<path>.+)$")
        def get_contents(request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            ref = (request.query.get("ref") or [repo.default_branch])[0]
            commit = repo.resolve(ref)
            if commit is None:
                return error(404, f"No commit found for the ref {ref}")
            tree = repo.trees[repo.commits[commit]["tree"]]
            path = params["path"].strip("/")
            if path in tree:
                return Reply(200, self._content_json(repo, path, tree[path], ref))
            inside = sorted(p for p in tree if p.startswith(path + "/"))
            if not inside:
                return error(404, "Not Found")
            names = sorted({p[len(path) + 1 :].split("/", 1)[0] for p in inside})
            listing = []
            for name in names:
                full = f"{path}/{name}"
                if full in tree:
                    listing.append(
                        {**self._content_json(repo, full, tree[full], ref), "content": None}
                    )
                else:
                    listing.append(
                        {
                            "type": "dir",
                            "name": name,
                            "path": full,
                            "sha": _sha("tree", full.encode()),
                            "size": 0,
                            "url": self._api(f"/repos/{repo.full_name}/contents/{full}"),
                        }
                    )
            return Reply(200, listing)

        @on("PUT", REPO + r"/contents/(?P<path>.+)$")
        def put_contents(request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            body = request.json()
            branch = body.get("branch") or repo.default_branch
            head = repo.refs.get(f"heads/{branch}")
            if head is None:
                return error(404, f"Branch {branch} not found")
            path = params["path"].strip("/")
            tree = dict(repo.trees[repo.commits[head]["tree"]])
            if path in tree and body.get("sha") != tree[path]:
                message = (
                    "sha wasn't supplied"
                    if not body.get("sha")
                    else f"{path} does not match {body['sha']}"
                )
                return error(409 if body.get("sha") else 422, message)
            blob = repo.put_blob(base64.b64decode(body["content"]))
            created = path not in tree
            tree[path] = blob
            commit = repo.put_commit(
                repo.put_tree(tree), [head], str(body.get("message", "")), self.now()
            )
            repo.refs[f"heads/{branch}"] = commit
            return Reply(
                201 if created else 200,
                {
                    "content": self._content_json(repo, path, blob, branch),
                    "commit": self._commit_json(repo, commit),
                },
            )

        @on("GET", REPO + r"/pulls$")
        def list_pulls(request: Request, repo: FakeRepo, _params: dict[str, str]) -> Reply:
            state = (request.query.get("state") or ["open"])[0]
            head = (request.query.get("head") or [None])[0]
            base = (request.query.get("base") or [None])[0]
            found = []
            for issue in sorted(repo.issues.values(), key=lambda i: -i["number"]):
                pull = issue.get("pull")
                if pull is None or (state != "all" and issue["state"] != state):
                    continue
                if head and f"{repo.owner}:{pull['head']}" != head:
                    continue
                if base and pull["base"] != base:
                    continue
                found.append(self._pull_json(repo, issue))
            return Reply(200, found)

        @on("POST", REPO + r"/pulls$")
        def create_pull(request: Request, repo: FakeRepo, _params: dict[str, str]) -> Reply:
            body = request.json()
            head, base = str(body.get("head", "")), str(body.get("base", ""))
            head = head.split(":", 1)[-1]
            if f"heads/{head}" not in repo.refs or f"heads/{base}" not in repo.refs:
                return error(
                    422,
                    "Validation Failed",
                    errors=[{"resource": "PullRequest", "field": "head", "code": "invalid"}],
                )
            for issue in repo.issues.values():
                pull = issue.get("pull")
                if pull and pull["head"] == head and issue["state"] == "open":
                    return error(
                        422,
                        "Validation Failed",
                        errors=[
                            {
                                "resource": "PullRequest",
                                "code": "custom",
                                "message": (
                                    f"A pull request already exists for {repo.owner}:{head}."
                                ),
                            }
                        ],
                    )
            issue = self._new_issue(repo, request, body)
            issue["pull"] = {"head": head, "base": base, "merged": False}
            return Reply(201, self._pull_json(repo, issue))

        @on("GET", REPO + r"/pulls/(?P<number>\d+)$")
        def get_pull(_request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            issue = repo.issues.get(int(params["number"]))
            if issue is None or "pull" not in issue:
                return error(404, "Not Found")
            return Reply(200, self._pull_json(repo, issue))

        @on("PUT", REPO + r"/pulls/(?P<number>\d+)/merge$")
        def merge_pull(_request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            issue = repo.issues.get(int(params["number"]))
            if issue is None or "pull" not in issue:
                return error(404, "Not Found")
            if issue["state"] != "open":
                return error(405, "Pull Request is not mergeable")
            merged = self.merge(repo.full_name, issue["number"], by="pitcrew[bot]")
            return Reply(
                200,
                {
                    "sha": merged["merge_commit_sha"],
                    "merged": True,
                    "message": "Pull Request successfully merged",
                },
            )

        @on("GET", REPO + r"/issues$")
        def list_issues(request: Request, repo: FakeRepo, _params: dict[str, str]) -> Reply:
            state = (request.query.get("state") or ["open"])[0]
            wanted = [n for n in (request.query.get("labels") or [""])[0].split(",") if n]
            since_text = (request.query.get("since") or [None])[0]
            since = (
                datetime.fromisoformat(since_text.replace("Z", "+00:00")) if since_text else None
            )
            found = []
            for issue in sorted(repo.issues.values(), key=lambda i: -i["number"]):
                if state != "all" and issue["state"] != state:
                    continue
                if any(n not in issue["labels"] for n in wanted):
                    continue
                if since is not None and issue["updated_at"] < since:
                    continue
                found.append(self._issue_json(repo, issue))
            return Reply(200, found)

        @on("POST", REPO + r"/issues$")
        def create_issue(request: Request, repo: FakeRepo, _params: dict[str, str]) -> Reply:
            body = request.json()
            if not body.get("title"):
                return error(
                    422,
                    "Validation Failed",
                    errors=[{"resource": "Issue", "field": "title", "code": "missing_field"}],
                )
            issue = self._new_issue(repo, request, body)
            return Reply(201, self._issue_json(repo, issue))

        @on("GET", REPO + r"/issues/(?P<number>\d+)$")
        def get_issue(_request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            issue = repo.issues.get(int(params["number"]))
            if issue is None:
                return error(404, "Not Found")
            return Reply(200, self._issue_json(repo, issue))

        @on("PATCH", REPO + r"/issues/(?P<number>\d+)$")
        def edit_issue(request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            issue = repo.issues.get(int(params["number"]))
            if issue is None:
                return error(404, "Not Found")
            body = request.json()
            for key in ("title", "body", "state"):
                if key in body:
                    issue[key] = body[key]
            if body.get("state") == "closed":
                issue["closed_at"] = self.now()
            issue["updated_at"] = self.now()
            return Reply(200, self._issue_json(repo, issue))

        @on("POST", REPO + r"/issues/(?P<number>\d+)/labels$")
        def add_labels(request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            issue = repo.issues.get(int(params["number"]))
            if issue is None:
                return error(404, "Not Found")
            body = request.json()
            names = body.get("labels", []) if isinstance(body, dict) else body
            for name in names:
                if name not in issue["labels"]:
                    issue["labels"].append(name)
            return Reply(200, [self._label_json(repo, n) for n in issue["labels"]])

        @on("GET", REPO + r"/issues/(?P<number>\d+)/comments$")
        def list_comments(_request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            number = int(params["number"])
            if number not in repo.issues:
                return error(404, "Not Found")
            return Reply(
                200, [self._comment_json(repo, number, c) for c in repo.comments.get(number, [])]
            )

        @on("POST", REPO + r"/issues/(?P<number>\d+)/comments$")
        def create_comment(request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            number = int(params["number"])
            issue = repo.issues.get(number)
            if issue is None:
                return error(404, "Not Found")
            body = str(request.json().get("body") or "")
            if not body:
                return error(
                    422,
                    "Validation Failed",
                    errors=[{"resource": "IssueComment", "field": "body", "code": "missing_field"}],
                )
            comment = {
                "id": next(self._ids),
                "body": body,
                "user": self._caller(request) or "ghost",
                "created_at": self.now(),
            }
            repo.comments.setdefault(number, []).append(comment)
            issue["updated_at"] = self.now()
            return Reply(201, self._comment_json(repo, number, comment))

        @on("GET", REPO + r"/labels/(?P<name>[^/]+)$")
        def get_label(_request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            if params["name"] not in repo.labels:
                return error(404, "Not Found")
            return Reply(200, self._label_json(repo, params["name"]))

        @on("POST", REPO + r"/labels$")
        def create_label(request: Request, repo: FakeRepo, _params: dict[str, str]) -> Reply:
            body = request.json()
            name = str(body.get("name") or "")
            if name in repo.labels:
                return error(
                    422,
                    "Validation Failed",
                    errors=[{"resource": "Label", "code": "already_exists", "field": "name"}],
                )
            repo.labels[name] = {
                "id": next(self._ids),
                "name": name,
                "color": body.get("color", "ededed"),
                "description": body.get("description"),
            }
            return Reply(201, self._label_json(repo, name))

        @on("GET", REPO + r"/collaborators/(?P<user>[^/]+)/permission$")
        def permission(_request: Request, repo: FakeRepo, params: dict[str, str]) -> Reply:
            level = repo.permissions.get(params["user"], "none")
            # The legacy field folds maintain into write and triage into read.
            legacy = {"maintain": "write", "triage": "read"}.get(level, level)
            return Reply(
                200, {"permission": legacy, "role_name": level, "user": self._user(params["user"])}
            )

        @on("GET", REPO + r"/hooks$")
        def list_hooks(_request: Request, repo: FakeRepo, _params: dict[str, str]) -> Reply:
            return Reply(200, repo.hooks)

        @on("POST", REPO + r"/hooks$")
        def create_hook(request: Request, repo: FakeRepo, _params: dict[str, str]) -> Reply:
            body = request.json()
            hook = {
                "type": "Repository",
                "id": next(self._ids),
                "name": "web",
                "active": body.get("active", True),
                "events": body.get("events", ["push"]),
                "config": {k: v for k, v in (body.get("config") or {}).items() if k != "secret"},
                "url": self._api(f"/repos/{repo.full_name}/hooks/{len(repo.hooks) + 1}"),
                "created_at": _iso(self.now()),
                "updated_at": _iso(self.now()),
            }
            repo.hooks.append(hook)
            return Reply(201, hook)

    def _new_issue(
        self, repo: FakeRepo, request: Request, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        number = max(repo.issues, default=0) + 1
        issue = {
            "id": next(self._ids),
            "number": number,
            "title": str(body.get("title", "")),
            "body": body.get("body") or "",
            "user": self._caller(request) or "ghost",
            "labels": list(body.get("labels") or []),
            "state": "open",
            "created_at": self.now(),
            "updated_at": self.now(),
        }
        repo.issues[number] = issue
        return issue


@contextmanager
def fake_github(tokens: tuple[str, ...] = ("ghp_fake_token",)) -> Iterator[FakeGitHub]:
    gh = FakeGitHub(tokens).start()
    try:
        yield gh
    finally:
        gh.stop()
