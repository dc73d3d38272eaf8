"""``pitcrew promote``, ``approve``, ``reject``, ``promotions``, ``environments`` and
``rollback``: the promotion commands, spoken to the pitcrew API (``--api``, default
``$PITCREW_API_URL`` or the local stack's http://127.0.0.1:8000) with the operator token
(``$PITCREW_API_TOKEN``). Exit codes: 0 done, 1 the API refused or failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_API = "http://127.0.0.1:8000"


def register(commands: argparse._SubParsersAction) -> None:
    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
        parser.add_argument("--api", default=os.environ.get("PITCREW_API_URL", DEFAULT_API))
        return parser

    promote = add("promote", "promote APP to VERSION through the environments")
    promote.add_argument("app")
    promote.add_argument("version")
    promote.add_argument("--to", metavar="ENV", help="the last environment (default: all)")
    promote.add_argument("--only", action="store_true", help="into --to alone")
    promote.set_defaults(run=_promote)
    for verb in ("approve", "reject"):
        decide = add(verb, f"{verb} the promotion that awaits approval")
        decide.add_argument("promotion_id", metavar="ID")
        decide.add_argument("--reason", default="")
        decide.set_defaults(run=_decide, verb=verb)
    listing = add("promotions", "list recent promotions")
    listing.add_argument("--app")
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(run=_promotions)
    add("environments", "each environment's versions and health").set_defaults(run=_environments)
    rollback = add("rollback", "roll APP in ENV back to its stable version")
    rollback.add_argument("app")
    rollback.add_argument("--env", required=True, metavar="ENV")
    rollback.set_defaults(run=_rollback)


def _call(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: Any = None,
    params: dict[str, Any] | None = None,
) -> Any:
    import httpx

    token = os.environ.get("PITCREW_API_TOKEN")
    if not token:
        _say("set PITCREW_API_TOKEN to the operator API token", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    try:
        answer = httpx.request(
            method,
            f"{args.api.rstrip('/')}{path}",
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        _say(f"cannot reach the pitcrew API at {args.api}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from exc
    try:
        data = answer.json()
    except ValueError:
        data = {"error": answer.text}
    if answer.status_code >= 400:
        _say(f"{answer.status_code}: {data.get('error', data)}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED)
    return data


def _say(text: str, file: Any = None) -> None:
    """A message for the person at the terminal (errors go to stderr)."""
    (file or sys.stdout).write(f"{text}\n")


def _show(promotion: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{promotion['id']}[/] {promotion['app']} {promotion['version']} -> "
        f"{promotion['target']}: [bold]{promotion['status']}[/]"
        + (f" ({promotion['reason']})" if promotion.get("reason") else "")
    )
    table = Table("environment", "step", "started", "ended", "outcome", "detail")
    for step in promotion.get("steps", []):
        table.add_row(
            step.get("environment") or "",
            step["step"],
            step.get("started_at") or "",
            step.get("ended_at") or "",
            step.get("outcome") or "",
            step.get("detail") or "",
        )
    console.print(table)


def _promote(args: argparse.Namespace) -> int:
    body = {"app": args.app, "version": args.version, "to": args.to, "only": args.only}
    _show(_call(args, "POST", "/promotions", {k: v for k, v in body.items() if v is not None}))
    return EXIT_OK


def _decide(args: argparse.Namespace) -> int:
    by = os.environ.get("USER") or "cli"
    body = {"by": by, "reason": args.reason}
    from urllib.parse import quote

    promotion = quote(args.promotion_id, safe="")
    _show(_call(args, "POST", f"/promotions/{promotion}/{args.verb}", body))
    return EXIT_OK


def _promotions(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    query = {"limit": args.limit, **({"app": args.app} if args.app else {})}
    data = _call(args, "GET", "/promotions", params=query)
    table = Table("id", "app", "version", "plan", "environment", "status", "created", "reason")
    for p in data["promotions"]:
        table.add_row(
            p["id"],
            p["app"],
            p["version"],
            " -> ".join(p["plan"]),
            p.get("environment") or "",
            p["status"],
            p["created_at"],
            p.get("reason") or "",
        )
    Console().print(table)
    return EXIT_OK


def _environments(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    data = _call(args, "GET", "/environments")
    table = Table("environment", "health", "failures", "app", "current", "previous", "stable")
    for env in data["environments"]:
        health = env.get("health") or {}
        rows = env["apps"] or [{}]
        for app in rows:
            table.add_row(
                env["name"],
                str(health.get("status", "unknown")),
                str(health.get("consecutive_failures", "")),
                app.get("app") or "",
                app.get("current") or "",
                app.get("previous") or "",
                app.get("stable") or "",
            )
    Console().print(table)
    return EXIT_OK


def _rollback(args: argparse.Namespace) -> int:
    body = {"app": args.app, "to": args.env, "rollback": True}
    _show(_call(args, "POST", "/promotions", body))
    return EXIT_OK
