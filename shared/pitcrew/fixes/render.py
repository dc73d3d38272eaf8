"""What pitcrew writes on GitHub: branch names, titles, pull request and issue bodies,
comments, and the hidden markers (``<!-- pitcrew:incident=ID -->``) by which it recognises
its own pull requests and issues later (webhooks, "never twice", attempt counting).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

LABEL = "pitcrew"
# GitHub refuses bodies above 65,536 characters; the diff gives way first.
MAX_BODY_CHARS = 60_000
MAX_TITLE_CHARS = 72
_MARKER = re.compile(r"<!--\s*pitcrew:([a-z_]+)=(\S+?)\s*-->")
_SLUG = re.compile(r"[^a-z0-9.]+")


def marker(name: str, value: str) -> str:
    return f"<!-- pitcrew:{name}={value} -->"


def markers(body: str | None) -> dict[str, str]:
    """The pitcrew markers of a body (the first of each name)."""
    found: dict[str, str] = {}
    for name, value in _MARKER.findall(body or ""):
        found.setdefault(name, value)
    return found


def workload_key(incident: Mapping[str, Any]) -> str:
    """``cluster/namespace/Kind/name``: what attempts and tracking issues are counted by."""
    workload = incident.get("workload") or {}
    return "/".join(
        str(part or "-")
        for part in (
            incident.get("cluster"),
            incident.get("namespace"),
            workload.get("kind"),
            workload.get("name"),
        )
    )


def _slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-") or "x"


def short_id(incident_id: str) -> str:
    return _slug(incident_id)[:8]


def branch_name(incident: Mapping[str, Any]) -> str:
    """``pitcrew/fix-<namespace>-<workload>-<short incident id>``."""
    workload = incident.get("workload") or {}
    return (
        f"pitcrew/fix-{_slug(str(incident.get('namespace') or 'cluster'))}"
        f"-{_slug(str(workload.get('name') or 'workload'))}-{short_id(str(incident['id']))}"
    )


def _where(incident: Mapping[str, Any]) -> str:
    workload = incident.get("workload") or {}
    namespace = incident.get("namespace")
    name = str(workload.get("name") or "?")
    return f"{namespace}/{name}" if namespace else name


def short_root_cause(incident: Mapping[str, Any]) -> str:
    """The diagnosis in a few words: its summary line (without the workload it starts
    with), else the first sentence of the root cause, cut at a word boundary."""
    diagnosis = incident.get("diagnosis") or {}
    text = str(diagnosis.get("summary_line") or diagnosis.get("root_cause") or "fix").strip()
    where = _where(incident)
    if text.startswith(where):
        text = text[len(where) :].lstrip(" :-")
    text = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".")
    limit = MAX_TITLE_CHARS - len(f"fix({where}): ")
    if len(text) > limit:
        text = text[: max(limit - 1, 10)].rsplit(" ", 1)[0] + "…"
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def title(incident: Mapping[str, Any]) -> str:
    """``fix(<namespace>/<workload>): <short root cause>``."""
    return f"fix({_where(incident)}): {short_root_cause(incident)}"


def commit_message(incident: Mapping[str, Any], path: str) -> str:
    return (
        f"{title(incident)}\n\n"
        f"Proposed by pitcrew for incident {incident['id']} "
        f"({incident.get('signature', '')}).\nChanged: {path}\n"
    )


def _evidence(diagnosis: Mapping[str, Any]) -> str:
    lines = [f"- {line}" for line in diagnosis.get("evidence") or []]
    return "\n".join(lines) or "- (none recorded)"


def _links(incident: Mapping[str, Any]) -> str:
    """The alert's name and every link the incident keeps (generator and runbook URLs),
    except pitcrew's own pull requests and issues."""
    subject = incident.get("subject") or {}
    lines = [f"- alert `{subject['alertname']}`"] if subject.get("alertname") else []
    pull = (incident.get("pull_request") or {}).get("url")
    links: Sequence[str] = incident.get("links") or []
    lines += [f"- {link}" for link in links if link != pull]
    return "\n".join(lines) or "- (the alerts carried no links)"


TRUNCATED = "… (diff truncated; see Files changed)\n"


def _diff_block(diff: str, room: int) -> str:
    """The diff as a fenced block of at most ``room`` characters."""
    fence_open, fence_close = "```diff\n", "```"
    room -= len(fence_open) + len(fence_close)
    if len(diff) > room:
        cut = max(room - len(TRUNCATED), 0)
        diff = diff[:cut].rsplit("\n", 1)[0] + "\n" + TRUNCATED
    return f"{fence_open}{diff}{fence_close}"


def _heading(incident: Mapping[str, Any]) -> str:
    diagnosis = incident.get("diagnosis") or {}
    workload = incident.get("workload") or {}
    confidence = float(diagnosis.get("confidence") or 0.0)
    return (
        f"**Workload:** {workload.get('kind')} `{_where(incident)}` in cluster "
        f"`{incident.get('cluster')}`\n"
        f"**Signature:** `{incident.get('signature')}`\n"
        f"**Diagnosis** ({diagnosis.get('source', 'rules')}, confidence {confidence:.2f}): "
        f"`{diagnosis.get('category', 'unknown')}`\n\n"
        f"### Root cause\n{diagnosis.get('root_cause') or '(not given)'}\n\n"
        f"### Evidence\n{_evidence(diagnosis)}\n"
    )


def _markers(incident: Mapping[str, Any]) -> str:
    return "\n".join(
        (
            marker("incident", str(incident["id"])),
            marker("signature", str(incident.get("signature"))),
            marker("workload", workload_key(incident)),
        )
    )


ROLLBACK = (
    "### How to roll back\n"
    "- Before merging: close this pull request. Nothing has changed in the cluster.\n"
    "- After merging: revert the merge commit (GitHub's **Revert** button, or "
    "`git revert -m 1 <merge commit>`) and let your GitOps controller sync; the change "
    "touches only the lines in the diff above, so the revert restores the previous manifest "
    "exactly.\n"
)


def pull_body(incident: Mapping[str, Any], how: str, diff: str) -> str:
    """The pull request body: root cause, evidence, the diff, alert links, how to roll
    back, and the markers."""
    head = f"## pitcrew: fix for incident `{incident['id']}`\n\n" + _heading(incident)
    tail = (
        f"\n### Alerts\n{_links(incident)}\n\n{ROLLBACK}\n"
        "Comment `/pitcrew retry` to diagnose again. pitcrew follows this pull request until "
        "the alert resolves.\n\n" + _markers(incident) + "\n"
    )
    change = f"\n### Change\nFound by {how}.\n\n"
    room = MAX_BODY_CHARS - len(head) - len(tail) - len(change) - 20
    return head + change + _diff_block(diff, room) + "\n" + tail


def diagnosed_again(incident: Mapping[str, Any]) -> str:
    diagnosis = incident.get("diagnosis") or {}
    return (
        f"pitcrew diagnosed `{incident.get('signature')}` again (incident "
        f"`{incident['id']}`, {incident.get('alerts', '?')} alert(s)): "
        f"{diagnosis.get('summary_line') or diagnosis.get('root_cause') or 'same diagnosis'}.\n\n"
        "This pull request is still the proposed fix; no second one was opened.\n\n"
        + marker("incident", str(incident["id"]))
    )


def attempts_exhausted(incident: Mapping[str, Any], limit: int) -> str:
    return (
        f"pitcrew did not open another fix for `{_where(incident)}`: it already opened "
        f"{limit} pull request(s) for this workload in the last 24 hours "
        f"(`gitops.max_fix_attempts`). Incident `{incident['id']}` "
        f"(`{incident.get('signature')}`) needs a human look.\n\n"
        + marker("incident", str(incident["id"]))
    )


def tracking_title(incident: Mapping[str, Any]) -> str:
    workload = incident.get("workload") or {}
    return f"pitcrew: proposed fixes for {workload.get('kind')} {_where(incident)}"


def tracking_body(incident: Mapping[str, Any]) -> str:
    return (
        f"pitcrew runs in safe mode (`gitops.safe_mode: true`): instead of opening pull "
        f"requests, it comments here with each diagnosis of {_where(incident)} in cluster "
        f"`{incident.get('cluster')}` and the change it would propose.\n\n"
        + marker("tracking", workload_key(incident))
    )


def proposal_comment(incident: Mapping[str, Any], how: str, diff: str) -> str:
    head = f"## Incident `{incident['id']}`\n\n" + _heading(incident)
    tail = (
        f"\n### Alerts\n{_links(incident)}\n\n"
        "Apply the diff above yourself, or set `gitops.safe_mode: false` to let pitcrew open "
        "a pull request. Comment `/pitcrew retry` to diagnose again.\n\n"
        + marker("incident", str(incident["id"]))
    )
    change = f"\n### Proposed change\nFound by {how}.\n\n"
    room = MAX_BODY_CHARS - len(head) - len(tail) - len(change) - 20
    return head + change + _diff_block(diff, room) + "\n" + tail


def resolved_comment(incident: Mapping[str, Any]) -> str:
    return (
        f"The alert of incident `{incident['id']}` (`{incident.get('signature')}`) resolved"
        f"{' at ' + str(incident['resolved_at']) if incident.get('resolved_at') else ''} "
        "after this fix merged. pitcrew keeps watching: if it fires again, the incident is "
        "reopened and noted here."
    )


def refired_comment(incident: Mapping[str, Any]) -> str:
    return (
        f"The alert of incident `{incident['id']}` (`{incident.get('signature')}`) fired "
        "again after this fix merged, so the incident is reopened: the fix did not cure the "
        "cause, or something else fails the same way. Comment `/pitcrew retry` to diagnose "
        "again."
    )
