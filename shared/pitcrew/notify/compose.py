"""What each domain event says: one ``Message`` per event, composed by its family (incidents,
costs, budgets, secret rotation, promotions, environment health), and a generic message for
any other event. Channel renderers only lay these out.

The detail fields read, per family (anything missing is left out of the message, never an
error):

- incidents (``Incident*``, ``FixPullRequest*``): the incident as the API shows it, as the
  detail itself or under ``incident``: ``id``, ``cluster``, ``namespace``, ``workload``
  ``{kind, name}``, ``status``, ``alerts``, ``first_seen``, ``diagnosis`` ``{category,
  root_cause, confidence, source, evidence, patch, diff, summary_line}``, ``pull_request``
  ``{number, url, repo, title}``, ``tracking_issue`` ``{url}`` (safe mode), ``url``;
- ``CostAnomalyDetected``: ``service``, ``date``, ``amount_usd``, ``baseline_usd``,
  ``delta_usd``, ``ratio``, ``baseline_days``, and ``preceding``: the promotions and pull
  requests before the spike, each ``{kind, title, at, url}``;
- ``BudgetThresholdCrossed``: ``budget``, ``month``, ``limit_usd``, ``actual_usd``,
  ``forecast_usd``, ``threshold_pct``;
- ``SecretRotated`` / ``SecretRotationFailed``: ``secret`` (name, ARN or Vault path),
  ``store``, ``version``, ``next_rotation``, ``step``, ``error``, ``next_attempt``;
- ``Promotion*``: ``promotion`` ``{id, app, version, environment, target}``, ``execution``,
  ``pull_request``, ``approve``, ``reject``, ``approvers``, ``step``, ``reason``,
  ``rolled_back_to``, ``previous_version``, ``requested_by``, ``approved_by``, ``url``;
- ``EnvironmentDegraded``: ``environment``, ``version``, ``health_url``, ``status``,
  ``error``, ``since``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from pitcrew.notify.message import Fact, Link, Message, Outcome, Section, one_line
from pitcrew.notify.routing import BusEvent

log = logging.getLogger("pitcrew.notify")

CATEGORY_LABELS: Mapping[str, str] = {
    "oom_killed": "OOM killed",
    "app_crash": "application crash",
    "missing_config": "missing configuration",
    "image_pull": "image pull failure",
    "probe_failure": "failing probe",
    "unschedulable": "unschedulable",
    "pvc_pending": "volume claim pending",
    "rollout_stuck": "rollout stuck",
    "node_not_ready": "node not ready",
    "job_failed": "job failed",
    "unknown": "cause unknown",
}
STORE_LABELS: Mapping[str, str] = {"secretsmanager": "AWS Secrets Manager", "vault": "Vault"}
TIMES = "\u00d7"  # the multiplication sign: "2.41x" the baseline
MAX_URL = 2000
MAX_EVIDENCE = 10
MAX_PRECEDING = 10
MAX_GENERIC_FACTS = 12


# --- reading the detail ----------------------------------------------------------------------


def _get(mapping: Any, *path: str) -> Any:
    """``mapping[path[0]][path[1]]...``, or None where the path stops."""
    for key in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _str(value: Any) -> str:
    """A scalar as text; None and empty containers as ''."""
    if value is None or (isinstance(value, list | dict) and not value):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, default=str, sort_keys=True)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            return float(value) if isinstance(value, str) else None
        except ValueError:
            return None
    return float(value)


def _money(value: Any) -> str:
    amount = _number(value)
    return f"${amount:,.2f}" if amount is not None else ""


def _facts(*pairs: tuple[str, Any] | Fact) -> tuple[Fact, ...]:
    """Facts from (label, value) pairs, leaving out the empty ones."""
    facts = []
    for pair in pairs:
        if isinstance(pair, Fact):
            if pair.value:
                facts.append(pair)
        elif text := _str(pair[1]):
            facts.append(Fact(pair[0], text))
    return tuple(facts)


def _url(value: Any) -> str | None:
    """``value`` if it is a usable http(s) link (a URL cannot be cut, so a huge one is not)."""
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        return None
    return value if len(value) <= MAX_URL and not re.search(r"\s", value) else None


def _humanize(name: str) -> str:
    """``PromotionAwaitingApproval`` -> ``Promotion awaiting approval``."""
    words = re.findall(r"[A-Z]+(?=[A-Z][a-z]|$)|[A-Z]?[a-z0-9]+|[A-Z]+", name) or [name]
    text = " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in words)
    return text[:1].upper() + text[1:]


def _footer(event: BusEvent) -> str:
    parts = ["pitcrew", event.name]
    if event.region:
        parts.append(event.region)
    return " · ".join(parts)


def _message(event: BusEvent, **fields: Any) -> Message:
    fields.setdefault("footer", _footer(event))
    fields.setdefault("timestamp", event.time or None)
    return Message(event=event.name, **fields)


def _pull_request_fact(pr: Any, label: str = "Pull request") -> Fact:
    if not isinstance(pr, Mapping):
        return Fact(label, "")
    number = pr.get("number")
    repo = pr.get("repo")
    text = f"{repo}#{number}" if repo and number else (f"#{number}" if number else "")
    url = _url(pr.get("url"))
    return Fact(label, text or (url or ""), url)


# --- incidents -------------------------------------------------------------------------------

_INCIDENT_HEADLINES: Mapping[str, tuple[str, Outcome]] = {
    "IncidentOpened": ("Incident opened", Outcome.FAILURE),
    "IncidentDiagnosed": ("Incident diagnosed", Outcome.FAILURE),
    "IncidentResolved": ("Incident resolved", Outcome.SUCCESS),
    "FixPullRequestOpened": ("Fix pull request opened", Outcome.WARNING),
    "FixPullRequestMerged": ("Fix merged", Outcome.WARNING),
    "FixPullRequestFailed": ("Fix not delivered", Outcome.FAILURE),
}


def _first_sentence(text: str) -> str:
    match = re.match(r"(.+?[.!?])(\s|$)", text.strip(), re.DOTALL)
    return one_line(match.group(1) if match else text)


def _proposed_fix(diagnosis: Mapping[str, Any]) -> Section | None:
    diff = diagnosis.get("diff")
    if isinstance(diff, str) and diff.strip():
        return Section("Proposed fix", diff.rstrip(), code=True, language="diff")
    patch = diagnosis.get("patch")
    if isinstance(patch, Mapping) and patch:
        text = yaml.safe_dump(dict(patch), sort_keys=False, default_flow_style=False)
        return Section("Proposed fix (patch)", text.rstrip(), code=True, language="yaml")
    return None


def _opened_summary(inc: Mapping[str, Any], workload: str) -> str:
    alerts = _number(inc.get("alerts"))
    count = f"{alerts:g} alert{'s' if alerts != 1 else ''}" if alerts else "Alerts"
    cluster = _str(inc.get("cluster"))
    return f"{count} firing for {workload}" + (f" in cluster {cluster}." if cluster else ".")


def incident(event: BusEvent) -> Message:
    detail = event.detail
    inc = _mapping(detail.get("incident")) or detail
    headline, outcome = _INCIDENT_HEADLINES.get(event.name, (_humanize(event.name), Outcome.INFO))
    diagnosis = _mapping(inc.get("diagnosis"))
    namespace = _str(inc.get("namespace"))
    kind = _str(_get(inc, "workload", "kind"))
    name = _str(_get(inc, "workload", "name"))
    subject = f"{namespace}/{name}" if namespace and name else name or _str(inc.get("signature"))
    category = _str(diagnosis.get("category"))
    label = CATEGORY_LABELS.get(category, category.replace("_", " "))
    title = f"{headline}: {subject or _str(inc.get('id')) or 'unknown workload'}"
    if label:
        title += f" ({label})"

    pr = inc.get("pull_request") or detail.get("pull_request")
    issue = inc.get("tracking_issue") or detail.get("tracking_issue")
    root_cause = _str(diagnosis.get("root_cause"))
    summary = (
        _str(diagnosis.get("summary_line"))
        or (_first_sentence(root_cause) if root_cause else "")
        or _str(inc.get("summary") or detail.get("summary"))
        or _opened_summary(inc, f"{kind} {subject}".strip() or "a workload")
    )
    if event.name == "FixPullRequestMerged":
        summary = f"{summary} — merged; waiting for the alert to resolve."
    elif event.name == "IncidentResolved":
        summary = f"{summary} — resolved."
    elif event.name == "FixPullRequestFailed":
        summary = f"No fix pull request: {_str(detail.get('error')) or 'see the incident'}"

    confidence = _number(diagnosis.get("confidence"))
    source = _str(diagnosis.get("source"))
    facts = _facts(
        ("Category", label),
        ("Workload", f"{kind} {subject}".strip() if subject else ""),
        ("Cluster", inc.get("cluster")),
        ("Namespace", namespace),
        (
            "Confidence",
            (f"{confidence:.0%}" + (f" ({source})" if source else ""))
            if confidence is not None
            else "",
        ),
        ("Alerts", inc.get("alerts")),
        ("Status", inc.get("status")),
        ("First seen", inc.get("first_seen")),
        ("Resolved", inc.get("resolved_at")),
        _pull_request_fact(pr, "Fix PR"),
        Fact("Tracking issue", _str(_get(issue, "url")), _url(_get(issue, "url"))),
    )

    sections: list[Section] = []
    if root_cause and one_line(root_cause) != summary:
        sections.append(Section("Root cause", root_cause))
    evidence = diagnosis.get("evidence")
    if isinstance(evidence, list) and evidence:
        lines = [f"• {_str(item)}" for item in evidence[:MAX_EVIDENCE]]
        if len(evidence) > MAX_EVIDENCE:
            lines.append(f"… and {len(evidence) - MAX_EVIDENCE} more")
        sections.append(Section("Evidence", "\n".join(lines)))
    if not isinstance(pr, Mapping) and (fix := _proposed_fix(diagnosis)) is not None:
        sections.append(fix)

    links = []
    pr_url = _url(_get(pr, "url"))
    if pr_url:
        links.append(Link(f"Fix PR #{_str(_get(pr, 'number'))}".rstrip(" #"), pr_url))
    incident_url = _url(inc.get("url")) or _url(detail.get("url"))
    if incident_url:
        links.append(Link("Incident", incident_url))
    return _message(
        event,
        title=title,
        summary=summary,
        outcome=outcome,
        facts=facts,
        sections=tuple(sections),
        links=tuple(links),
        url=incident_url or pr_url,
    )


# --- costs and budgets -----------------------------------------------------------------------


def cost_anomaly(event: BusEvent) -> Message:
    d = event.detail
    service = _str(d.get("service")) or "all services"
    day = _str(d.get("date"))
    amount, baseline = _money(d.get("amount_usd")), _money(d.get("baseline_usd"))
    delta = _money(d.get("delta_usd"))
    ratio = _number(d.get("ratio"))
    days = _str(d.get("baseline_days"))
    baseline_label = f"{days}-day baseline" if days else "baseline"
    summary = f"{service} cost {amount or '?'}" + (f" on {day}" if day else "")
    if baseline:
        summary += f", against a {baseline_label} of {baseline}"
    extras = [
        x for x in (f"+{delta}" if delta else "", f"{ratio:.2f}{TIMES}" if ratio else "") if x
    ]
    if extras:
        summary += f" ({', '.join(extras)})"

    preceding = d.get("preceding")
    sections = []
    links: list[Link] = []
    if isinstance(preceding, list) and preceding:
        lines = []
        for item in preceding[:MAX_PRECEDING]:
            if not isinstance(item, Mapping):
                continue
            kind = _str(item.get("kind")).replace("_", " ")
            text = " ".join(x for x in (_str(item.get("at")), kind + ":" if kind else "") if x)
            text = f"{text} {_str(item.get('title'))}".strip()
            url = _url(item.get("url"))
            lines.append(f"• {text}" + (f" {url}" if url else ""))
            if url and len(links) < 5:
                links.append(Link(_str(item.get("title")) or kind or "change", url))
        if lines:
            sections.append(Section("Changes before the spike", "\n".join(lines)))
    return _message(
        event,
        title=f"Cost anomaly: {service}" + (f" on {day}" if day else ""),
        summary=summary,
        outcome=Outcome.WARNING,
        facts=_facts(
            ("Service", service),
            ("Day", day),
            ("Spent", amount),
            (baseline_label[:1].upper() + baseline_label[1:], baseline),
            ("Increase", delta),
            ("Ratio", f"{ratio:.2f}{TIMES}" if ratio else ""),
        ),
        sections=tuple(sections),
        links=tuple(links),
        url=_url(d.get("url")),
    )


def budget(event: BusEvent) -> Message:
    d = event.detail
    name = _str(d.get("budget")) or "budget"
    limit = _number(d.get("limit_usd"))
    actual = _number(d.get("actual_usd"))
    forecast = _number(d.get("forecast_usd"))
    month = _str(d.get("month"))
    share = actual / limit if actual is not None and limit else None
    over = share is not None and share >= 1
    if share is not None:
        title = f"Budget {name}: {share:.0%} of {_money(limit)} spent"
        summary = f"{_money(actual)} of the {_money(limit)} {name} budget is spent"
    else:
        title = f"Budget {name}: threshold crossed"
        summary = f"The {name} budget crossed its threshold"
    summary += f" for {month}" if month else ""
    if forecast is not None and limit:
        verb = "exceeds" if forecast > limit else "stays within"
        summary += f"; the month-end forecast of {_money(forecast)} {verb} it"
    threshold = _number(d.get("threshold_pct"))
    return _message(
        event,
        title=title,
        summary=summary + ".",
        outcome=Outcome.FAILURE if over else Outcome.WARNING,
        facts=_facts(
            ("Budget", name),
            ("Month", month),
            ("Spent", _money(actual)),
            ("Limit", _money(limit)),
            ("Threshold", f"{threshold:g}%" if threshold is not None else ""),
            ("Forecast", _money(forecast)),
        ),
        url=_url(d.get("url")),
    )


# --- secret rotation -------------------------------------------------------------------------


def rotation(event: BusEvent) -> Message:
    d = event.detail
    secret = _str(d.get("secret") or d.get("secret_id") or d.get("name") or d.get("path"))
    store = STORE_LABELS.get(_str(d.get("store")), _str(d.get("store")))
    failed = event.name == "SecretRotationFailed"
    where = f" in {store}" if store else ""
    if failed:
        step = _str(d.get("step"))
        error = _str(d.get("error"))
        summary = f"Rotating {secret or 'a secret'}{where} failed" + (
            f" at step {step}" if step else ""
        )
        summary += f": {one_line(error)}" if error else "."
        sections = (Section("Error", error),) if len(error) > 200 else ()
    else:
        summary = f"{secret or 'A secret'}{where} has a new version"
        summary += f"; next rotation {d['next_rotation']}." if d.get("next_rotation") else "."
        sections = ()
    return _message(
        event,
        title=f"{'Secret rotation failed' if failed else 'Secret rotated'}: {secret or '?'}",
        summary=summary,
        outcome=Outcome.FAILURE if failed else Outcome.SUCCESS,
        facts=_facts(
            ("Secret", secret),
            ("Store", store),
            ("Outcome", "failed" if failed else "rotated"),
            ("Step", d.get("step")),
            ("Version", d.get("version")),
            ("Next rotation", d.get("next_rotation")),
            ("Next attempt", d.get("next_attempt")),
        ),
        sections=sections,
        url=_url(d.get("url")),
    )


# --- promotions and environments -------------------------------------------------------------


def _execution_url(arn: str) -> str | None:
    """The Step Functions console page of an execution ARN."""
    parts = arn.split(":")
    if len(parts) < 8 or parts[2] != "states":
        return None
    region = parts[3]
    return (
        f"https://{region}.console.aws.amazon.com/states/home?region={region}"
        f"#/v2/executions/details/{arn}"
    )


def promotion(event: BusEvent) -> Message:
    d = event.detail
    p = _mapping(d.get("promotion")) or d
    app = _str(p.get("app")) or "release"
    version = _str(p.get("version"))
    source = _str(p.get("environment"))
    target = _str(p.get("target")) or _str(d.get("environment"))
    what = f"{app} {version}".strip()
    arrow = f" → {target}" if target else ""
    reason = one_line(_str(d.get("reason") or d.get("error")))
    approvers = d.get("approvers")
    whom = (
        ", ".join(_str(a) for a in approvers)
        if isinstance(approvers, list) and approvers
        else "an operator"
    )
    if event.name == "PromotionStarted":
        title, outcome = f"Promotion started: {what}{arrow}", Outcome.INFO
        summary = (
            f"Promoting {what}"
            + (f" from {source}" if source else "")
            + (f" to {target}." if target else ".")
        )
    elif event.name == "PromotionAwaitingApproval":
        title, outcome = f"Promotion awaiting approval: {what}{arrow}", Outcome.WARNING
        summary = (
            f"{what} is ready"
            + (f" in {source}" if source else "")
            + f" and waits for {whom} to approve its promotion"
            + (f" to {target}." if target else ".")
        )
    elif event.name == "PromotionSucceeded":
        title, outcome = f"Promotion succeeded: {what}{arrow}", Outcome.SUCCESS
        summary = f"{what} is live and healthy" + (f" in {target}." if target else ".")
    elif event.name == "PromotionRolledBack":
        back_to = _str(d.get("rolled_back_to") or d.get("previous_version"))
        title, outcome = f"Promotion rolled back: {what}{arrow}", Outcome.FAILURE
        summary = (f"{target} is back on {back_to}" if target and back_to else "Rolled back") + (
            f" after {what} failed" + (f": {reason}" if reason else ".")
        )
    else:  # PromotionFailed, and any other Promotion* event
        title, outcome = f"{_humanize(event.name)}: {what}{arrow}", Outcome.FAILURE
        summary = f"{what} was not promoted" + (f" to {target}" if target else "")
        summary += f": {reason}" if reason else "."

    pr = d.get("pull_request")
    execution = _str(d.get("execution"))
    execution_url = _execution_url(execution) if execution else None
    facts = _facts(
        ("App", app),
        ("Version", version),
        ("From", source),
        ("To", target),
        ("Waiting for", f"approval by {whom}" if event.name == "PromotionAwaitingApproval" else ""),
        ("Approve", d.get("approve") if event.name == "PromotionAwaitingApproval" else ""),
        ("Reject", d.get("reject") if event.name == "PromotionAwaitingApproval" else ""),
        ("Step", d.get("step")),
        ("Rolled back to", d.get("rolled_back_to")),
        ("Previous version", d.get("previous_version")),
        ("Started by", d.get("requested_by")),
        ("Approved by", d.get("approved_by")),
        _pull_request_fact(pr),
        ("Promotion", p.get("id")),
    )
    links = []
    if pr_url := _url(_get(pr, "url")):
        links.append(Link(f"Pull request #{_str(_get(pr, 'number'))}".rstrip(" #"), pr_url))
    if execution_url:
        links.append(Link("Execution", execution_url))
    page = _url(d.get("url"))
    if page:
        links.insert(0, Link("Promotion", page))
    return _message(
        event,
        title=title,
        summary=summary,
        outcome=outcome,
        facts=facts,
        links=tuple(links),
        url=page or pr_url or execution_url,
    )


def environment_degraded(event: BusEvent) -> Message:
    d = event.detail
    environment = _str(d.get("environment")) or "an environment"
    status = _str(d.get("status"))
    since = _str(d.get("since"))
    error = one_line(_str(d.get("error")))
    summary = f"{environment} fails its health check"
    summary += f" (HTTP {status})" if status.isdigit() else (f" ({status})" if status else "")
    summary += f" since {since}" if since else ""
    summary += f": {error}" if error else "."
    health = _url(d.get("health_url"))
    return _message(
        event,
        title=f"Environment degraded: {environment}",
        summary=summary,
        outcome=Outcome.FAILURE,
        facts=_facts(
            ("Environment", environment),
            ("Version", d.get("version")),
            Fact("Health check", health or "", health),
            ("Status", status),
            ("Since", since),
        ),
        links=(Link("Health check", health),) if health else (),
        url=_url(d.get("url")),
    )


# --- any other event -------------------------------------------------------------------------


def generic(event: BusEvent) -> Message:
    """Any event: its scalar fields as facts, the rest as JSON."""
    scalars = {k: v for k, v in event.detail.items() if isinstance(v, str | int | float | bool)}
    facts = _facts(*((k.replace("_", " ").capitalize(), v) for k, v in scalars.items()))
    rest = {k: v for k, v in event.detail.items() if k not in scalars}
    if len(facts) > MAX_GENERIC_FACTS:
        rest = {**{k: scalars[k] for k in list(scalars)[MAX_GENERIC_FACTS:]}, **rest}
        facts = facts[:MAX_GENERIC_FACTS]
    sections: tuple[Section, ...] = ()
    if rest:
        text = json.dumps(rest, indent=2, default=str, ensure_ascii=False)
        sections = (Section("Details", text, code=True, language="json"),)
    return _message(
        event,
        title=_humanize(event.name),
        summary=_str(event.detail.get("summary")) or f"{_humanize(event.name)} on the pitcrew bus.",
        outcome=Outcome.INFO,
        facts=facts,
        sections=sections,
        url=_url(event.detail.get("url")),
    )


COMPOSERS: Mapping[str, Callable[[BusEvent], Message]] = {
    **dict.fromkeys(_INCIDENT_HEADLINES, incident),
    "CostAnomalyDetected": cost_anomaly,
    "BudgetThresholdCrossed": budget,
    "SecretRotated": rotation,
    "SecretRotationFailed": rotation,
    **dict.fromkeys(
        (
            "PromotionStarted",
            "PromotionAwaitingApproval",
            "PromotionSucceeded",
            "PromotionFailed",
            "PromotionRolledBack",
        ),
        promotion,
    ),
    "EnvironmentDegraded": environment_degraded,
}


def compose(event: BusEvent) -> Message:
    """The message for ``event``. A detail its family's composer cannot read (a bug, or a
    publisher that changed shape) still gets the generic message: a notification is never
    lost to its layout."""
    composer = COMPOSERS.get(event.name, generic)
    try:
        return composer(event)
    except Exception:
        if composer is generic:
            raise
        log.exception(
            "cannot compose %s with %s; sending it generic", event.name, composer.__name__
        )
        return generic(event)
