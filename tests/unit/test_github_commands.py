"""What pitcrew writes on and reads from GitHub: /pitcrew commands, markers, branch names
and titles."""

from __future__ import annotations

from typing import Any

import pytest

from pitcrew.fixes import render
from pitcrew.fixes.commands import Command, parse_command
from tests.support.events import load_event


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/pitcrew retry", Command("retry")),
        ("  /pitcrew   Approve  \n\nthanks", Command("approve")),
        ("/pitcrew reject too risky on a Friday", Command("reject", "too risky on a Friday")),
        ("/pitcrew", Command("")),
        ("/pitcrew frobnicate", Command("frobnicate")),
        ("LGTM /pitcrew retry", None),
        ("/pitcrewretry", None),
        ("", None),
        (None, None),
    ],
)
def test_commands_are_the_first_line_of_a_comment(
    body: str | None, expected: Command | None
) -> None:
    assert parse_command(body) == expected


def test_only_known_verbs_are_commands() -> None:
    assert Command("retry").known and not Command("frobnicate").known


def incident() -> dict[str, Any]:
    return dict(load_event("eventbridge/IncidentDiagnosed.json")["detail"])


def test_branch_name_and_title() -> None:
    detail = incident()
    assert render.branch_name(detail) == "pitcrew/fix-payments-api-01jd3xk5"
    title = render.title(detail)
    assert title == "fix(payments/api): OOMKilled at 512Mi: raise the memory limit to 768Mi"
    assert len(title) <= render.MAX_TITLE_CHARS


def test_a_long_root_cause_is_cut_at_a_word() -> None:
    detail = incident()
    detail["diagnosis"] = {
        "root_cause": "Container api keeps crashing because the database connection pool is "
        "exhausted by a leak in the retry loop of the settlement worker. More text."
    }
    title = render.title(detail)
    assert len(title) <= render.MAX_TITLE_CHARS and title.endswith("…")
    assert title.startswith("fix(payments/api): container api keeps crashing")


def test_markers_round_trip_through_a_body() -> None:
    detail = incident()
    body = render.pull_body(detail, "manifest_paths template", "--- a/x\n+++ b/x\n")
    assert render.markers(body) == {
        "incident": detail["id"],
        "signature": detail["signature"],
        "workload": "prod-eu/payments/Deployment/api",
    }


def test_a_huge_diff_is_truncated_to_fit_githubs_body_limit() -> None:
    diff = "".join(f"+line {i}\n" for i in range(20_000))
    body = render.pull_body(incident(), "search", diff)
    assert len(body) <= render.MAX_BODY_CHARS
    assert "diff truncated" in body and "How to roll back" in body
