"""``pitcrew promotions|approve|environments`` against a fake pitcrew API on loopback: what
reaches the API, and what the person at the terminal reads when it cannot be reached or
refuses the token."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pitcrew.cli import main
from tests.support.fakehttp import FakeService, Reply, Request

TOKEN = "cli-operator-token"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeService]:
    fake = FakeService("pitcrew-api")

    @fake.route("GET", "/promotions")
    def promotions(request: Request) -> Reply:
        if request.header("Authorization") != f"Bearer {TOKEN}":
            return Reply(401, {"error": "invalid operator token"})
        return Reply(200, {"promotions": [], "count": 0})

    @fake.route("POST", "/promotions/{promotion_id}/approve")
    def approve(request: Request) -> Reply:
        return Reply(409, {"error": f"promotion {request.params['promotion_id']} is not awaiting"})

    fake.start()
    monkeypatch.setenv("PITCREW_API_TOKEN", TOKEN)
    monkeypatch.setenv("PITCREW_API_URL", fake.url)
    yield fake
    fake.stop()


def test_the_app_filter_reaches_the_api_as_one_parameter(api: FakeService) -> None:
    assert main(["promotions", "--app", "shop+api&limit=500", "--limit", "5"]) == 0
    (request,) = api.received("GET", "/promotions")
    assert request.query == {"app": ["shop+api&limit=500"], "limit": ["5"]}


def test_an_id_with_a_slash_stays_in_its_path_segment(
    api: FakeService, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as failed:
        main(["approve", "../../environments"])
    assert failed.value.code == 1
    (request,) = api.requests
    assert request.path == "/promotions/..%2F..%2Fenvironments/approve"
    assert capsys.readouterr().err.startswith("409: promotion ")


def test_a_wrong_token_is_said_plainly(
    api: FakeService, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PITCREW_API_TOKEN", "wrong")
    with pytest.raises(SystemExit) as failed:
        main(["promotions"])
    assert failed.value.code == 1
    assert capsys.readouterr().err == "401: invalid operator token\n"


def test_an_api_that_cannot_be_reached_is_named(
    api: FakeService, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(SystemExit) as failed:
        main(["environments", "--api", closed])
    assert failed.value.code == 1
    assert f"cannot reach the pitcrew API at {closed}" in capsys.readouterr().err
