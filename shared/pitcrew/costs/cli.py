"""``pitcrew costs``: the top cost groups of the last N days, their change against the N days
before, anomalies marked; as a rich table, JSON or CSV.

Where the numbers come from (the first that applies):

1. ``--api URL`` (or ``$PITCREW_API_URL``): ``GET /costs?days=N`` on a running pitcrew API
   with the operator token ``$PITCREW_API_TOKEN`` (``make run`` serves one on
   http://127.0.0.1:8000);
2. otherwise the costs table itself, as the functions find it: ``$COSTS_TABLE`` and the
   usual AWS credentials, ``$AWS_ENDPOINT_URL`` for an emulator.

Exit codes: 0 success, 1 the source failed or cannot be reached, 2 bad input (``--days`` out of
range, no source, ``--api`` without ``$PITCREW_API_TOKEN``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(commands: argparse._SubParsersAction) -> None:
    costs = commands.add_parser(
        "costs",
        help="show the top cost groups, their change and anomalies",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    costs.add_argument("--days", default="30", help="days to show, 1-396 (default 30)")
    costs.add_argument("--top", type=_positive, default=15, help="groups in the table (default 15)")
    form = costs.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="the whole report as JSON")
    form.add_argument("--csv", action="store_true", help="one CSV line per group")
    costs.add_argument(
        "--api",
        default=os.environ.get("PITCREW_API_URL"),
        metavar="URL",
        help="read GET /costs from this pitcrew API (default: $PITCREW_API_URL; "
        "else the table named by $COSTS_TABLE)",
    )
    costs.set_defaults(run=run_costs)


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1, got {text!r}")
    return int(text)


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"pitcrew costs: {message}\n")
    return code


def fetch_report(days: int, api: str | None, top: int | None = None) -> dict[str, Any]:
    """The ``GET /costs`` document, from the API or straight from the table; with ``top``,
    only that many groups (and one summing the rest)."""
    if api:
        import httpx

        from pitcrew.errors import BadRequestError, ServiceError

        token = os.environ.get("PITCREW_API_TOKEN", "").strip()
        if not token:
            raise BadRequestError("--api needs the operator token in PITCREW_API_TOKEN")
        try:
            response = httpx.get(
                f"{api.rstrip('/')}/costs",
                params={"days": str(days), **({"top": str(top)} if top else {})},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30.0,
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ServiceError("pitcrew api", f"cannot reach {api}: {exc}") from exc
        if response.status_code != 200:
            raise ServiceError("pitcrew api", f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            document = response.json()
        except ValueError as exc:
            raise ServiceError("pitcrew api", f"{api}/costs did not answer JSON") from exc
        if not isinstance(document, dict):
            raise ServiceError("pitcrew api", f"{api}/costs did not answer a cost report")
        return document
    from pitcrew.config import load_config
    from pitcrew.costs.history import CostHistory
    from pitcrew.costs.report import cost_report

    return cost_report(CostHistory(), load_config().costs, days, top=top)


def run_costs(args: argparse.Namespace) -> int:
    from pitcrew.costs.report import parse_days
    from pitcrew.errors import InputError, PitcrewError

    try:
        days = parse_days(args.days)
    except InputError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if not args.api and not os.environ.get("COSTS_TABLE"):
        return _fail(
            "no source: give --api URL (or set PITCREW_API_URL), or set COSTS_TABLE", EXIT_USAGE
        )
    try:
        # The table shows the top groups only: no need to fetch (or send) the others.
        top = None if args.json or args.csv else args.top
        report = fetch_report(days, args.api, top)
    except InputError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except PitcrewError as exc:
        return _fail(str(exc), EXIT_FAILED)
    except OSError as exc:
        return _fail(f"cannot reach the source: {exc}", EXIT_FAILED)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
    elif args.csv:
        write_csv(report, sys.stdout)
    else:
        print_table(report, top=args.top)
    return EXIT_OK


def _anomalies_by_group(report: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    marked: dict[tuple[str, str], list[str]] = {}
    for a in report.get("anomalies", []):
        marked.setdefault((a.get("provider", ""), a.get("group", "")), []).append(a["day"])
    return marked


def _cell(text: str) -> str:
    """A text cell a spreadsheet will not run: group names come from tags, which anyone who
    can tag a resource writes (``=HYPERLINK(...)``)."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_csv(report: dict[str, Any], out: Any) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["provider", "group", "total_usd", "previous_usd", "change_pct", "anomaly_days"]
    )
    marked = _anomalies_by_group(report)
    for g in report.get("groups", []):
        change = g.get("change_pct")
        writer.writerow(
            [
                _cell(str(g["provider"])),
                _cell(str(g["group"])),
                f"{g['total_usd']:.2f}",
                f"{g['previous_usd']:.2f}",
                "" if change is None else f"{change:.1f}",
                " ".join(marked.get((g["provider"], g["group"]), [])),
            ]
        )


def print_table(report: dict[str, Any], top: int = 15) -> None:
    from rich.console import Console
    from rich.table import Table

    marked = _anomalies_by_group(report)
    days = report.get("days")
    forecast = report.get("forecast") or {}
    groups = report.get("groups", [])
    total = int(report.get("groups_total", len(groups)))
    table = Table(
        title=f"Costs, last {days} days ({report.get('from')} to {report.get('to')})",
        caption=(
            f"total ${report.get('total_usd', 0):,.2f}; month to date "
            f"${forecast.get('month_to_date_usd') or 0:,.2f}, forecast "
            f"${forecast.get('forecast_usd') or 0:,.2f}; ! = anomaly"
            + (f"; top {top} of {total} groups" if total > top else "")
        ),
    )
    table.add_column("provider")
    table.add_column("group")
    table.add_column(f"{days} days", justify="right")
    table.add_column("previous", justify="right")
    table.add_column("change", justify="right")
    table.add_column("anomalies")
    for g in groups[:top]:
        change = g.get("change_pct")
        if change is None:
            change_text = "new" if g["total_usd"] > 0 else ""
        else:
            colour = "red" if change > 10 else "green" if change < -10 else ""
            change_text = f"[{colour}]{change:+.1f}%[/]" if colour else f"{change:+.1f}%"
        days_marked = marked.get((g["provider"], g["group"]), [])
        table.add_row(
            g["provider"],
            ("! " if days_marked else "") + g["group"],
            f"${g['total_usd']:,.2f}",
            f"${g['previous_usd']:,.2f}",
            change_text,
            "[yellow]" + ", ".join(days_marked) + "[/]" if days_marked else "",
        )
    Console().print(table)
