"""os.environ as each in-process invocation sees it."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from pitcrew.local import environ


@pytest.fixture
def scoped() -> Iterator[None]:
    environ.install()
    yield
    environ.uninstall()


def test_install_and_uninstall_put_the_real_environ_back() -> None:
    original = os.environ
    environ.install()
    environ.install()
    assert isinstance(os.environ, environ.ScopedEnviron)
    environ.uninstall()
    assert isinstance(os.environ, environ.ScopedEnviron)
    environ.uninstall()
    assert os.environ is original


@pytest.mark.usefixtures("scoped")
def test_an_overlay_shows_over_the_real_environment_and_can_hide_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PITCREW_TEST_BASE", "base")
    monkeypatch.setenv("PITCREW_TEST_HIDDEN", "secret")

    with environ.scoped({"PITCREW_TEST_OWN": "own", "PITCREW_TEST_HIDDEN": None}):
        assert os.environ["PITCREW_TEST_OWN"] == "own"
        assert os.getenv("PITCREW_TEST_BASE") == "base"
        assert "PITCREW_TEST_HIDDEN" not in os.environ
        assert os.getenv("PITCREW_TEST_HIDDEN") is None
        assert "PITCREW_TEST_HIDDEN" not in dict(os.environ)
        os.environ["PITCREW_TEST_WRITTEN"] = "inside"
        del os.environ["PITCREW_TEST_BASE"]
        assert "PITCREW_TEST_BASE" not in os.environ

    assert os.environ["PITCREW_TEST_BASE"] == "base"
    assert "PITCREW_TEST_OWN" not in os.environ
    assert "PITCREW_TEST_WRITTEN" not in os.environ


@pytest.mark.usefixtures("scoped")
def test_threads_have_their_own_overlays() -> None:
    seen: dict[str, str | None] = {}
    barrier = threading.Barrier(2)

    def run(name: str) -> None:
        with environ.scoped({"PITCREW_TEST_WHO": name}):
            barrier.wait()
            seen[name] = os.environ.get("PITCREW_TEST_WHO")

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert seen == {"a": "a", "b": "b"}
