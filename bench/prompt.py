"""Prompt size of an LLM investigation: a crash-looping Deployment whose previous container
logged 10,000 lines (a realistic web app log, with one ``ERROR ... Traceback`` in the middle of
its last part and a credential or two in passing), built into a prompt with the local default
``llm.max_prompt_tokens`` (4000). Checks the error line and its exception survived trimming and
that no secret did.

Usage: ``.venv/bin/python bench/prompt.py [--lines N] [--max-tokens N] [--error-at FRACTION]``
(``make bench`` runs it plain). Last line: ``prompt tokens N``; target N <= max_prompt_tokens.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' support package

from pitcrew.config import load_config
from pitcrew.llm.prompt import build_prompt, estimate_tokens
from tests.support.fakellm import crashloop_incident

ERROR_LINE = (
    "{ts} ERROR [uvicorn.error] Exception in ASGI application Traceback (most recent call last):"
)
TRACEBACK = [
    '  File "/app/.venv/lib/python3.11/site-packages/uvicorn/protocols/http/h11_impl.py", '
    "line 404, in run_asgi",
    "    result = await app(self.scope, self.receive, self.send)",
    '  File "/app/payments/ledger.py", line 88, in settle',
    "    balance = Decimal(row['balance']) / row['shares']",
    "ZeroDivisionError: division by zero (ledger 4411 has zero shares)",
]
SECRET = "postgres://ledger:Pr0d-S3cret-Passw0rd@db.payments.svc:5432/ledger"  # noqa: S105
ROUTES = ["/api/v1/payments", "/api/v1/refunds", "/healthz", "/api/v1/ledger/{id}", "/metrics"]


def app_log(lines: int, error_at: float, seed: int = 7) -> list[str]:
    """A FastAPI service's log: access lines, periodic INFO/DEBUG chatter, a few WARNINGs,
    and one unhandled exception at ``error_at`` (0..1) of the way through."""
    rng = random.Random(seed)
    start = datetime(2024, 11, 19, 6, 0, tzinfo=UTC)
    error_index = min(int(lines * error_at), lines - len(TRACEBACK) - 1)
    log: list[str] = []
    index = 0
    while len(log) < lines:
        ts = (start + timedelta(milliseconds=137 * index)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        index += 1
        if len(log) == error_index:
            log.append(ERROR_LINE.format(ts=ts))
            log.extend(TRACEBACK)
            continue
        roll = rng.random()
        if roll < 0.78:
            route = rng.choice(ROUTES).replace("{id}", str(rng.randint(1000, 9999)))
            status = rng.choice([200, 200, 200, 201, 204, 404])
            log.append(
                f"{ts} INFO [uvicorn.access] 10.42.{rng.randint(0, 9)}.{rng.randint(2, 250)}:"
                f'{rng.randint(30000, 60000)} - "GET {route} HTTP/1.1" {status}'
            )
        elif roll < 0.93:
            log.append(
                f"{ts} DEBUG [payments.worker] settled batch {rng.randint(1, 99999)} in "
                f"{rng.randint(3, 900)} ms (request_id={rng.getrandbits(64):016x})"
            )
        elif roll < 0.99:
            log.append(f"{ts} INFO [payments.db] pool size=10 in_use={rng.randint(0, 10)}")
        else:
            log.append(
                f"{ts} WARNING [payments.db] slow query 1.{rng.randint(0, 9)}s, reconnecting "
                f"to {SECRET}"
            )
    log[-3:] = [
        f"{ts} INFO [uvicorn.error] Shutting down",
        f"{ts} INFO [payments.db] closing pool {SECRET}",
        f"{ts} INFO [uvicorn.error] Finished server process [1]",
    ]
    return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--error-at", type=float, default=0.8)
    args = parser.parse_args(argv)
    llm = load_config().llm
    max_tokens = args.max_tokens or (llm.max_prompt_tokens if llm else 4000)

    log = app_log(args.lines, args.error_at)
    # The crash-looping Deployment the LLM tests use, with this log as its previous one.
    subject, context, rules = crashloop_incident(log=log)
    started = time.perf_counter()
    prompt = build_prompt(subject, context, rules, max_tokens=max_tokens)
    elapsed = time.perf_counter() - started
    text = prompt.system + "\n" + prompt.user

    error = next(line for line in log if " ERROR " in line)
    checks = {
        "error line kept": error in prompt.user,
        "exception kept": TRACEBACK[-1] in prompt.user,
        "last line kept": log[-1] in prompt.user,
        "secret redacted": "Pr0d-S3cret-Passw0rd" not in text,
        "within budget": prompt.tokens <= max_tokens,
    }
    shown = sum(1 for line in log if line in prompt.user)
    print(
        f"log lines {len(log)}, {sum(len(x) + 1 for x in log)} chars; {shown} lines in the prompt"
    )
    print(
        f"system {len(prompt.system)} chars, user {len(prompt.user)} chars, "
        f"built in {elapsed * 1000:.0f} ms"
    )
    for name, ok in checks.items():
        print(f"{name}: {'ok' if ok else 'FAILED'}")
    print(f"prompt tokens {estimate_tokens(prompt.system) + estimate_tokens(prompt.user)}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
