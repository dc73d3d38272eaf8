"""``pitcrew local --fire NAME`` on the stack's own template: every schedule rule has a name
that fires it, and a bare event name two functions share (``Daily``) fires neither."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pitcrew.local.errors import UnknownNameError
from pitcrew.local.runtime import LocalRuntime
from pitcrew.local.template import default_template_path
from tests.support.local import local_runtime


@pytest.fixture(scope="module")
def runtime() -> Iterator[LocalRuntime]:
    with local_runtime(default_template_path(), serve_api=False) as started:
        yield started


def test_each_function_event_names_its_own_rule(runtime: LocalRuntime) -> None:
    names = runtime.schedule_names()

    cost, vault = names["cost_tracker.Daily"], names["rotate_vault.Daily"]
    assert cost != vault
    assert names["CostTrackerFunctionDaily"] == cost
    assert names["RotateVaultFunctionDaily"] == vault
    assert names["EnvironmentHealth"] == names["promotion_steps.EnvironmentHealth"]


def test_an_event_name_two_functions_share_is_refused_with_the_qualified_names(
    runtime: LocalRuntime,
) -> None:
    assert "Daily" not in runtime.schedule_names()
    with pytest.raises(UnknownNameError, match=r"cost_tracker\.Daily.*rotate_vault\.Daily"):
        runtime.fire("Daily")
