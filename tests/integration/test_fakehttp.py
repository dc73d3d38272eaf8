"""The fake HTTP service every integration fake is built on: real HTTP on loopback."""

from __future__ import annotations

import httpx

from tests.support.fakehttp import Reply, Request, fake_service


def test_routes_answer_and_requests_are_recorded() -> None:
    with fake_service("api") as service:

        @service.route("POST", "/repos/{owner}/{repo}/pulls")
        def create_pull(request: Request) -> Reply:
            return Reply(201, {"number": 7, "repo": request.params["repo"], **request.json()})

        assert service.url.startswith("http://127.0.0.1:")
        response = httpx.post(f"{service.url}/repos/acme/gitops/pulls", json={"title": "fix"})
        assert response.status_code == 201
        assert response.json() == {"number": 7, "repo": "gitops", "title": "fix"}
        [seen] = service.received("POST", "/repos/")
        assert seen.header("content-type") == "application/json"


def test_unmatched_requests_get_a_json_404_and_later_routes_override() -> None:
    with fake_service() as service:
        assert httpx.get(f"{service.url}/nothing").json()["message"] == "Not Found"
        service.reply("GET", "/x", Reply(500, "down"))
        service.reply("GET", "/x", Reply(200, {"up": True}, headers={"Retry-After": "1"}))
        response = httpx.get(f"{service.url}/x")
        assert response.json() == {"up": True}
        assert response.headers["retry-after"] == "1"
