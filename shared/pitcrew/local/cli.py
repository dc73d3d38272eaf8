"""The ``pitcrew local``, ``pitcrew invoke`` and ``pitcrew demo`` subcommands.

Registering them imports nothing heavy: moto, boto3 and chalice load only when a command runs.
Exit codes: 0 success, 1 a handler error or a stack that cannot start, 2 bad input (unknown
function or rule, missing or invalid event file, a port already in use).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pitcrew.local.runtime import LocalRuntime

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ALERTMANAGER_SAMPLE = Path("events/alertmanager/firing-crashloop.json")


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``local``, ``invoke`` and ``demo`` to the ``pitcrew`` command."""
    local = commands.add_parser(
        "local",
        help="run the whole stack on an embedded AWS emulator (make run)",
        description="Start, on 127.0.0.1, the AWS emulator with template.yaml's resources, "
        "every function behind its trigger, and the API. Ctrl-C stops everything.",
    )
    local.add_argument("--port", type=int, default=8000, help="API port (default 8000)")
    local.add_argument(
        "--aws-port", type=int, default=4566, help="AWS emulator port (default 4566)"
    )
    _add_stack_options(local)
    local.add_argument(
        "--fire",
        metavar="RULE",
        action="append",
        default=[],
        help="fire this schedule rule once right after start-up (rule name, logical id, "
        "function.Event such as cost_tracker.Daily, or Event when one function alone has it); "
        "repeatable",
    )
    local.add_argument("-v", "--verbose", action="store_true", help="log every request")
    local.set_defaults(run=run_local)

    invoke = commands.add_parser(
        "invoke",
        help="run one function's handler once and print its result as JSON",
        description="Provision the stack on a private emulator, run FUNCTION's handler once "
        "with the event, print the result (or Lambda's error object) as JSON.",
    )
    invoke.add_argument("function", help="function name (api, diagnose, ...)")
    invoke.add_argument(
        "--event", required=True, metavar="FILE", help="JSON event file ('-' reads stdin)"
    )
    _add_stack_options(invoke)
    invoke.set_defaults(run=run_invoke)

    demo = commands.add_parser(
        "demo",
        help="send the sample events in events/ through the running stack (make demo)",
        description="Send events/ through a running `pitcrew local`: webhooks to the API, "
        "domain events to the bus, scheduled events to their rules' targets; show what each "
        "produced.",
    )
    demo.add_argument("--api", default="http://127.0.0.1:8000", help="the running API")
    demo.add_argument(
        "--aws-endpoint", default="http://127.0.0.1:4566", help="the running emulator"
    )
    demo.add_argument("--events", default="events", metavar="DIR", help="sample events folder")
    demo.add_argument("--config", metavar="FILE", help="the configuration the stack uses")
    demo.add_argument("--bus", default="pitcrew", help="event bus for events/eventbridge")
    demo.set_defaults(run=run_demo)


def _add_stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="pitcrew configuration (default: $PITCREW_CONFIG, else infra/local/pitcrew.yaml)",
    )
    parser.add_argument(
        "--template",
        metavar="FILE",
        help="SAM template (default: $PITCREW_TEMPLATE, else template.yaml)",
    )


def _fail(command: str, message: str, code: int) -> int:
    print(f"pitcrew {command}: {message}", file=sys.stderr, flush=True)
    return code


@contextlib.contextmanager
def _runtime_log_to_stderr(verbose: bool) -> Iterator[None]:
    """The runtime's log (one line per invocation) on stderr while the command runs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("pitcrew.local")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.handlers[:], level, logger.propagate = saved
        logger.setLevel(level)


def _start_errors() -> tuple[type[BaseException], ...]:
    from pitcrew.errors import PitcrewError

    return (PitcrewError, OSError)


def _describe_start_error(exc: BaseException) -> tuple[str, int]:
    from pitcrew.errors import ConfigError
    from pitcrew.local.errors import PortInUseError, UnknownNameError

    if isinstance(exc, ConfigError):
        where = f" ({exc.source})" if exc.source else ""
        lines = "\n".join(f"  - {p}" for p in exc.problems)
        return f"cannot start{where}:\n{lines}", EXIT_FAILED
    if isinstance(exc, PortInUseError | UnknownNameError):
        return str(exc), EXIT_USAGE
    return f"cannot start: {exc}", EXIT_FAILED


# ---------------------------------------------------------------------------- pitcrew local


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _alertmanager_token(runtime: LocalRuntime) -> str:
    """The token the local configuration expects from Alertmanager (resolved against the
    emulator), or a placeholder when it cannot be read."""
    try:
        from pitcrew.config import load_config

        config = load_config(runtime.config_source)
        if config.alertmanager is not None:
            return config.alertmanager.token.get()
    except Exception as exc:  # the banner still prints, with a placeholder
        logging.getLogger("pitcrew.local").debug("alertmanager token: %s", exc)
    return "$ALERTMANAGER_TOKEN"


# Resources that invoke a function without being one of its SAM events.
_INVOKERS = {
    "AWS::Serverless::StateMachine": "Step Functions",
    "AWS::StepFunctions::StateMachine": "Step Functions",
}


def _invoked_by(runtime: LocalRuntime, logical_id: str) -> list[str]:
    """Who else invokes the function: Secrets Manager through a Lambda permission, state
    machines through their definition substitutions."""
    found = []
    for resource in runtime.template.resources.values():
        properties = resource.properties or {}
        names = json.dumps(properties.get("FunctionName"), default=str)
        substitutions = json.dumps(properties.get("DefinitionSubstitutions"), default=str)
        if resource.type == "AWS::Lambda::Permission" and logical_id in names:
            principal = str(properties.get("Principal", ""))
            found.append("Secrets Manager rotation" if "secretsmanager" in principal else principal)
        elif resource.type in _INVOKERS and logical_id in substitutions:
            found.append(_INVOKERS[resource.type])
    return found


def _function_triggers(runtime: LocalRuntime) -> list[str]:
    lines = []
    api_runner = runtime.api.runner if runtime.api is not None else None
    for runner in runtime.functions or []:
        kinds = sorted({str(e.get("Type")) for e in runner.function.events.values()})
        if runner is api_runner:
            kinds = ["API", *[k for k in kinds if k not in ("Api", "HttpApi")]]
        kinds += sorted(set(_invoked_by(runtime, runner.function.logical_id)))
        lines.append(f"{runner.name} ({', '.join(kinds) or 'invoke only'})")
    return lines


def banner(runtime: LocalRuntime, started_s: float) -> str:
    template = runtime.template
    stack = runtime.stack
    account = stack.account_id if stack is not None else "?"
    lines = [
        f"pitcrew local: stack {runtime.stack_name!r} from {_display_path(template.path)} "
        f"is up in {started_s:.1f} s",
        f"  API           {runtime.api_url or '(none: no API function in the template)'}",
        f"  AWS emulator  {runtime.endpoint_url}  (region {runtime.region}, account "
        f"{account}; AWS_ENDPOINT_URL={runtime.endpoint_url})",
        f"  config        {runtime.config_source}",
        f"  functions     {', '.join(_function_triggers(runtime)) or 'none'}",
    ]
    for name, value in runtime.generated_env.items():
        lines.append(f"  {name}={value}  (generated: the configuration reads env:{name})")
    if runtime.warnings:
        lines.append("  warnings:")
        lines.extend(f"    - {w}" for w in runtime.warnings)
    if runtime.api_url:
        sample = _display_path(template.root / ALERTMANAGER_SAMPLE)
        lines += [
            "Send an alert:",
            f"  curl -sS -X POST {runtime.api_url}/webhooks/alertmanager \\",
            f"    -H 'Authorization: Bearer {_alertmanager_token(runtime)}' \\",
            f"    -H 'Content-Type: application/json' --data @{sample}",
        ]
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


def run_local(args: argparse.Namespace) -> int:
    with _runtime_log_to_stderr(args.verbose):
        return _run_local(args)


def _run_local(args: argparse.Namespace) -> int:
    from pitcrew.local.runtime import LocalRuntime

    started = time.perf_counter()
    runtime = LocalRuntime(
        template_path=args.template,
        config=args.config,
        aws_port=args.aws_port,
        api_port=args.port,
    )
    stop = threading.Event()

    def request_stop(_signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            runtime.start()
        except _start_errors() as exc:
            message, code = _describe_start_error(exc)
            return _fail("local", message, code)
        print(banner(runtime, time.perf_counter() - started), flush=True)
        for name in args.fire:
            try:
                rule = runtime.fire(name)
            except _start_errors() as exc:
                message, code = _describe_start_error(exc)
                return _fail("local", message, code)
            print(f"fired schedule rule {rule}", flush=True)
        while not stop.wait(0.5):
            pass
        print("pitcrew local: stopping", file=sys.stderr, flush=True)
        return EXIT_OK
    finally:
        runtime.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------------- pitcrew invoke


def read_event(source: str) -> Any:
    """The event in a JSON file (or stdin for ``-``); ``ValueError`` says what is wrong."""
    if source == "-":
        text, name = sys.stdin.read(), "stdin"
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"no such event file: {source}")
        text, name = path.read_text(encoding="utf-8"), source
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc


def run_invoke(args: argparse.Namespace) -> int:
    from pitcrew.local.runtime import LocalRuntime

    try:
        event = read_event(args.event)
    except ValueError as exc:
        return _fail("invoke", str(exc), EXIT_USAGE)
    runtime = LocalRuntime(
        template_path=args.template,
        config=args.config,
        aws_port=0,
        serve_api=False,
        triggers=False,
    )
    # stdout carries the result only: whatever the handler prints goes to stderr.
    with _runtime_log_to_stderr(False), contextlib.redirect_stdout(sys.stderr):
        try:
            runtime.start()
            invocation = runtime.invoke(args.function, event)
        except _start_errors() as exc:
            message, code = _describe_start_error(exc)
            return _fail("invoke", message, code)
        finally:
            runtime.stop()
    print(json.dumps(invocation.payload, indent=2), flush=True)
    if invocation.ok:
        return EXIT_OK
    trace = "".join(invocation.payload.get("stackTrace") or [])
    message = f"{args.function} failed: {invocation.error_type}: {invocation.error_message}"
    return _fail("invoke", f"{message}\n{trace}".rstrip(), EXIT_FAILED)


# ---------------------------------------------------------------------------- pitcrew demo


def run_demo(args: argparse.Namespace) -> int:
    from pitcrew.local.demo import Demo

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    demo = Demo(
        api_url=args.api,
        aws_endpoint=args.aws_endpoint,
        events_dir=Path(args.events),
        config=args.config,
        bus=args.bus,
    )
    return demo.run()
