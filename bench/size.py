"""Size of each built function as Lambda counts it: the unzipped size of its code plus every
layer it uses (Globals' and its own), which must stay under 250 MB. Target: at most 100 MB.

Usage, after ``make build``: ``.venv/bin/python bench/size.py [--no-check]``. The last line
is ``largest function N MB (name)`` (MB: 2**20 bytes, as Lambda's quota counts them). Exits
2 when there is no build, 1 when an artifact fails its check.

First it checks that the artifacts work on their own: each function's handler module is
imported by an isolated interpreter (``-I -S -B``: no site-packages, no bytecode writes)
whose path is what Lambda's is (the function's build directory, then its layers), with a
Lambda-like environment that cannot reach AWS; every module must come from those
directories or the standard library (boto3 too: outside Lambda no runtime provides it). A
function with an API event on ``GET /healthz`` is then invoked with an API Gateway REST
proxy event for it and must answer 200.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from coldstart import (
    BUILD_DIR,
    ISOLATED,
    TEMPLATE,
    Function,
    Job,
    JobFailed,
    Stack,
    lambda_environment,
    named_like,
    read_stack,
)

MB = 2**20
TARGET_MB = 100
HEALTH_PATH = "/healthz"

# Runs in the isolated interpreter: import the handler, call it if asked, and report where
# every module came from. Parameters arrive as JSON in PITCREW_BENCH_CHECK.
CHECK = """
import importlib, json, os, sys, sysconfig
params = json.loads(os.environ["PITCREW_BENCH_CHECK"])
module_name, _, attribute = params["handler"].rpartition(".")
handler = getattr(importlib.import_module(module_name), attribute)
answer = None
if params["event"] is not None:
    class Context:
        function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        function_version = "$LATEST"
        memory_limit_in_mb = 512
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
        aws_request_id = "bench-request"
        log_group_name = log_stream_name = "bench"
        def get_remaining_time_in_millis(self):
            return 15000
    answer = handler(params["event"], Context())
import boto3
stdlib = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib")}
roots = tuple(os.path.realpath(p) for p in (*params["roots"], *stdlib))
strays = sorted(
    f"{name}: {module.__file__}"
    for name, module in list(sys.modules.items())
    if getattr(module, "__file__", None)
    and not os.path.realpath(module.__file__).startswith(roots)
)
print(json.dumps({"answer": answer, "boto3": boto3.__file__, "strays": strays}))
"""


def tree_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (a symbolic link counts as itself)."""
    return sum(
        (Path(directory) / name).lstat().st_size
        for directory, _, files in os.walk(path)
        for name in files
    )


def rest_event(path: str, method: str = "GET") -> dict[str, object]:
    """An API Gateway REST API proxy event (payload format 1.0) without a body."""
    headers = {"Accept": "application/json", "User-Agent": "pitcrew-bench"}
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/v1{path}",
            "stage": "v1",
            "requestId": "bench-request",
            "accountId": "123456789012",
            "apiId": "bench",
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "pitcrew-bench"},
        },
        "body": None,
        "isBase64Encoded": False,
    }


def health_event(function: Function) -> dict[str, object] | None:
    """The REST event for ``GET /healthz`` if one of the function's API events serves it."""
    for event in function.events.values():
        properties = event.get("Properties") or {}
        if (
            event.get("Type") == "Api"
            and properties.get("Path") == HEALTH_PATH
            and str(properties.get("Method", "")).upper() in ("GET", "ANY")
        ):
            return rest_event(HEALTH_PATH)
    return None


def check(stack: Stack, function: Function) -> str | None:
    """Run the artifact check; the problem found, or None."""
    paths = stack.python_path(function)
    event = health_event(function)
    env = lambda_environment(function)
    env["PITCREW_BENCH_CHECK"] = json.dumps(
        {"handler": function.handler, "event": event, "roots": [str(p) for p in paths]}
    )
    job = Job(function.name, CHECK, function.code_dir, env, ISOLATED, tuple(paths))
    try:
        report = json.loads(job.run().stdout.splitlines()[-1])
    except JobFailed as exc:
        return str(exc)
    if report["strays"]:
        return "modules from outside the artifact: " + ", ".join(report["strays"])
    boto3_dir = Path(report["boto3"]).parent.parent.parent.name
    done = f"imports from its artifact alone (boto3 from {boto3_dir})"
    if event is not None:
        answer = report["answer"] or {}
        status = answer.get("statusCode")
        if status != 200:
            return f"GET {HEALTH_PATH} answered {status}: {answer.get('body')}"
        done += f"; GET {HEALTH_PATH} -> 200 {answer.get('body')}"
    print(f"check {function.name}: {done}")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--no-check", action="store_true", help="sizes only")
    args = parser.parse_args(argv)

    built_template = BUILD_DIR / "template.yaml"
    if not built_template.is_file():
        print(f"no build: {built_template} is missing; run `make build` first", file=sys.stderr)
        return 2
    stack = named_like(read_stack(built_template), read_stack(TEMPLATE))
    missing = [
        str(path)
        for path in (*(f.code_dir for f in stack.functions), *stack.layers.values())
        if not path.is_dir()
    ]
    if missing or not stack.functions:
        print(f"incomplete build ({', '.join(missing)}): run `make build`", file=sys.stderr)
        return 2

    failures = 0
    if not args.no_check:
        for function in stack.functions:
            problem = check(stack, function)
            if problem:
                failures += 1
                print(f"check {function.name}: FAILED: {problem}")

    layer_bytes = {lid: tree_bytes(path) for lid, path in stack.layers.items()}
    for lid, nbytes in layer_bytes.items():
        print(f"layer {lid:<21} {nbytes / MB:6.1f} MB")
    totals: dict[str, float] = {}
    for function in stack.functions:
        name = function.name
        code = tree_bytes(function.code_dir)
        total = code + sum(layer_bytes[lid] for lid in function.layers)
        totals[name] = total / MB
        parts = " + ".join(
            [
                f"code {code / MB:.1f}",
                *(f"{lid} {layer_bytes[lid] / MB:.1f}" for lid in function.layers),
            ]
        )
        verdict = "ok" if totals[name] <= TARGET_MB else f"over {TARGET_MB} MB"
        print(f"function {name:<18} {totals[name]:6.1f} MB  = {parts}  ({verdict})")
    largest = max(totals, key=lambda name: totals[name])
    print(f"largest function {totals[largest]:.1f} MB ({largest})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
