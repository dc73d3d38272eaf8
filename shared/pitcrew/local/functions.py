"""Run the stack's Lambda handlers in this process, each the way Lambda would run it.

A ``FunctionRunner`` owns one function of the template: it imports the handler's module under a
name of its own (every function's module is called ``app.py``), with the function's code
directory on ``sys.path`` only while importing, and calls the handler in a worker thread with
the function's Environment, a Lambda context, and its Timeout. The result is an
``Invocation``, successful or carrying the error payload Lambda would return. A handler that
overruns its timeout is reported as timed out at once; its thread cannot be killed and keeps
running in the background until it returns.
"""

from __future__ import annotations

import contextlib
import decimal
import importlib
import importlib.util
import json
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pitcrew.local import environ
from pitcrew.local.context import ClientContext, LambdaContext, LogStream
from pitcrew.local.errors import UnknownNameError

if TYPE_CHECKING:
    from pitcrew.local.provision import LocalFunction

log = logging.getLogger("pitcrew.local")

# Only one import may change sys.path at a time.
_import_lock = threading.Lock()

PYTHON_RUNTIME = "python3.11"
# Lambda's limit on a function's initialisation (its module imports), apart from its Timeout.
INIT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation, as Lambda reports it.

    ``payload`` is the JSON the caller receives: the handler's result, or Lambda's error
    object (``errorMessage``, ``errorType``, ``requestId``, ``stackTrace``) when
    ``function_error`` is set (``"Unhandled"``).
    """

    function: str
    request_id: str
    payload: Any
    function_error: str | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.function_error is None

    @property
    def error_type(self) -> str | None:
        if self.ok or not isinstance(self.payload, dict):
            return None
        return str(self.payload.get("errorType", "")) or None

    @property
    def error_message(self) -> str | None:
        if self.ok or not isinstance(self.payload, dict):
            return None
        return str(self.payload.get("errorMessage", ""))

    def payload_bytes(self) -> bytes:
        return json.dumps(self.payload).encode("utf-8")

    def describe(self) -> str:
        if self.ok:
            return f"ok in {self.duration_ms:.0f} ms"
        return f"{self.error_type}: {self.error_message} ({self.duration_ms:.0f} ms)"


def _json_default(value: Any) -> Any:
    # What the Python runtime's serializer accepts beyond plain JSON: Decimal (DynamoDB).
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _error_payload(
    exc: BaseException, request_id: str, error_type: str | None = None
) -> dict[str, Any]:
    # The handler's frames only, as in Lambda: the runtime's own are left out.
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(frames),
    }


class _InitError(Exception):
    """The function could not be initialised; ``payload`` is Lambda's error object."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("errorMessage", ""))
        self.payload = payload


class FunctionRunner:
    """One function of the stack, runnable in-process."""

    def __init__(
        self,
        function: LocalFunction,
        *,
        region: str,
        name: str | None = None,
        environment: Mapping[str, str | None] | None = None,
        overrides: Mapping[str, str | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``name`` is the stack's name for it (default ``function.name``); ``environment``
        is what the runtime adds below the function's own Environment (endpoint,
        credentials); ``overrides`` wins over it (the local config file)."""
        self.function = function
        self.name = name or function.name
        self.region = region
        self._base_environment = dict(environment or {})
        self._overrides = dict(overrides or {})
        self._clock = clock
        self._log_stream = LogStream(function.function_name)
        self._handler: Callable[[Any, Any], Any] | None = None
        self._module: ModuleType | None = None
        self._load_lock = threading.Lock()

    @property
    def arn(self) -> str:
        return self.function.arn

    @property
    def loaded(self) -> bool:
        return self._handler is not None

    @property
    def handler_object(self) -> Any:
        """The handler attribute itself (for the API: the Chalice app), loading it if needed."""
        return self._load()

    def environment(self) -> dict[str, str | None]:
        """The variables the function sees: runtime base, its Environment, Lambda's reserved
        variables, then the local overrides."""
        fn = self.function
        reserved: dict[str, str | None] = {
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{PYTHON_RUNTIME}",
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": self._log_stream.group,
            "AWS_LAMBDA_LOG_STREAM_NAME": self._log_stream.stream,
            "LAMBDA_TASK_ROOT": str(fn.code_dir),
            "_HANDLER": fn.handler,
        }
        return {
            **self._base_environment,
            **{k: str(v) for k, v in fn.environment.items()},
            **reserved,
            **self._overrides,
        }

    # ------------------------------------------------------------------ loading

    def _module_file(self, module_name: str) -> Path:
        return self.function.code_dir / (module_name.replace(".", "/") + ".py")

    def _import(self) -> tuple[ModuleType, Callable[[Any, Any], Any]]:
        module_name, _, attribute = self.function.handler.rpartition(".")
        module_name = module_name.replace("/", ".")
        if not module_name or not attribute:
            raise _InitError(
                {
                    "errorMessage": f"Bad handler '{self.function.handler}': "
                    "expected MODULE.FUNCTION",
                    "errorType": "Runtime.MalformedHandlerName",
                }
            )
        path = self._module_file(module_name)
        unique = f"pitcrew_local_function_{self.name}_{module_name.replace('.', '_')}"
        request_id = str(uuid.uuid4())
        code_dir = str(self.function.code_dir)
        with _import_lock:
            spec = importlib.util.spec_from_file_location(unique, path)
            if spec is None or spec.loader is None or not path.is_file():
                raise _InitError(
                    {
                        "errorMessage": f"Unable to import module '{module_name}': "
                        f"no such file {path}",
                        "errorType": "Runtime.ImportModuleError",
                    }
                )
            module = importlib.util.module_from_spec(spec)
            sys.modules[unique] = module
            sys.path.insert(0, code_dir)
            try:
                spec.loader.exec_module(module)
            except ImportError as exc:
                sys.modules.pop(unique, None)
                raise _InitError(
                    {
                        **_error_payload(exc, request_id, "Runtime.ImportModuleError"),
                        "errorMessage": f"Unable to import module '{module_name}': {exc}",
                    }
                ) from exc
            except Exception as exc:
                sys.modules.pop(unique, None)
                raise _InitError(_error_payload(exc, request_id)) from exc
            finally:
                with contextlib.suppress(ValueError):
                    sys.path.remove(code_dir)
        handler = getattr(module, attribute, None)
        if handler is None or not callable(handler):
            raise _InitError(
                {
                    "errorMessage": f"Handler '{attribute}' missing on module '{module_name}'",
                    "errorType": "Runtime.HandlerNotFound",
                }
            )
        return module, handler

    def _load(self) -> Callable[[Any, Any], Any]:
        """Import the handler (a cold start) inside the function's environment, once."""
        if self._handler is not None:
            return self._handler
        with self._load_lock:
            if self._handler is None:
                with environ.scoped(self.environment()):
                    self._module, self._handler = self._import()
            return self._handler

    def load(self) -> Invocation | None:
        """Cold-start the function now; None when it loaded, else the init error."""
        started = time.perf_counter()
        try:
            self._load()
        except _InitError as exc:
            return Invocation(
                self.name,
                str(exc.payload.get("requestId", uuid.uuid4())),
                exc.payload,
                "Unhandled",
                (time.perf_counter() - started) * 1000,
            )
        return None

    # ------------------------------------------------------------------ invoking

    def new_context(
        self, client_context: ClientContext | None = None, request_id: str | None = None
    ) -> LambdaContext:
        """A Lambda context whose remaining time starts counting now."""
        fn = self.function
        return LambdaContext(
            function_name=fn.function_name,
            function_version="$LATEST",
            invoked_function_arn=fn.arn,
            memory_limit_in_mb=fn.memory,
            timeout_s=fn.timeout,
            log_group_name=self._log_stream.group,
            log_stream_name=self._log_stream.stream,
            aws_request_id=request_id,
            client_context=client_context,
            clock=self._clock,
        )

    def invoke(
        self,
        event: Any,
        *,
        trigger: str = "invoke",
        client_context: ClientContext | None = None,
    ) -> Invocation:
        """Run the handler once with ``event`` and wait for it, at most its Timeout.

        A cold start (importing the handler) comes first and, as in Lambda, does not count
        against the Timeout; it has Lambda's own limit, INIT_TIMEOUT_S.
        """
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        # The handler gets its own copy, as it would after crossing the wire.
        wire_event = json.loads(json.dumps(event))
        outcome: dict[str, Any] = {}
        initialised = threading.Event()
        variables = self.environment()
        variables["_X_AMZN_TRACE_ID"] = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"

        def run() -> None:
            with environ.scoped(variables):
                try:
                    handler = self._load()
                except _InitError as exc:
                    outcome["error"] = {**exc.payload, "requestId": request_id}
                    return
                finally:
                    initialised.set()
                try:
                    result = handler(wire_event, self.new_context(client_context, request_id))
                except BaseException as exc:  # a handler may raise anything, SystemExit included
                    outcome["error"] = _error_payload(exc, request_id)
                    log.debug("%s raised", self.name, exc_info=True)
                    return
                try:
                    outcome["payload"] = json.loads(json.dumps(result, default=_json_default))
                except (TypeError, ValueError) as exc:
                    outcome["error"] = {
                        "errorMessage": f"Unable to marshal response: {exc}",
                        "errorType": "Runtime.MarshalError",
                        "requestId": request_id,
                        "stackTrace": [],
                    }

        worker = threading.Thread(
            target=run, name=f"lambda:{self.name}:{request_id[:8]}", daemon=True
        )
        worker.start()
        if initialised.wait(INIT_TIMEOUT_S):
            worker.join(self.function.timeout)
        duration = (time.perf_counter() - started) * 1000
        if worker.is_alive():
            what = "Task" if initialised.is_set() else "Init"
            limit = self.function.timeout if initialised.is_set() else INIT_TIMEOUT_S
            payload: Any = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {request_id} Error: {what} timed out after "
                f"{float(limit):.2f} seconds",
            }
            invocation = Invocation(self.name, request_id, payload, "Unhandled", duration)
        elif "error" in outcome:
            invocation = Invocation(self.name, request_id, outcome["error"], "Unhandled", duration)
        else:
            invocation = Invocation(self.name, request_id, outcome.get("payload"), None, duration)
        level = logging.INFO if invocation.ok else logging.WARNING
        log.log(level, "%s <- %s: %s", self.name, trigger, invocation.describe())
        return invocation


class Functions:
    """The stack's functions by every name a caller may use: the short name (``api``), the
    template's logical id, the deployed FunctionName, and the ARN (optionally qualified)."""

    def __init__(self, runners: Iterable[FunctionRunner], *, async_workers: int = 8) -> None:
        self._runners = {r.name: r for r in runners}
        self._by_key: dict[str, FunctionRunner] = {}
        for runner in self._runners.values():
            fn = runner.function
            for key in (runner.name, fn.logical_id, fn.function_name, fn.arn):
                self._by_key[key] = runner
        for runner in self._runners.values():  # the folder name, when no other has it
            self._by_key.setdefault(runner.function.name, runner)
        self._async = ThreadPoolExecutor(
            max_workers=async_workers, thread_name_prefix="lambda-async"
        )
        self._closed = False

    def __iter__(self) -> Any:
        return iter(self._runners.values())

    def __len__(self) -> int:
        return len(self._runners)

    @property
    def names(self) -> list[str]:
        return sorted(self._runners)

    def find(self, name_or_arn: str) -> FunctionRunner | None:
        """The runner for a name or ARN, or None when it is not one of the stack's."""
        if name_or_arn in self._by_key:
            return self._by_key[name_or_arn]
        # arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER] or NAME:QUALIFIER
        parts = name_or_arn.split(":")
        if "function" in parts:
            index = parts.index("function")
            if index + 1 < len(parts):
                return self._by_key.get(parts[index + 1])
        if len(parts) == 2:
            return self._by_key.get(parts[0])
        return None

    def get(self, name: str) -> FunctionRunner:
        runner = self.find(name)
        if runner is None:
            raise UnknownNameError("function", name, self.names)
        return runner

    def invoke_async(self, runner: FunctionRunner, event: Any, *, trigger: str) -> str:
        """Queue an asynchronous invocation (``InvocationType=Event``); returns at once.

        Lambda would retry a failed asynchronous invocation twice over several minutes; here
        the failure is logged and the event dropped.
        """
        request_id = str(uuid.uuid4())
        if self._closed:
            log.warning("%s <- %s: dropped, the runtime is stopping", runner.name, trigger)
            return request_id
        self._async.submit(runner.invoke, event, trigger=trigger)
        return request_id

    def close(self) -> None:
        self._closed = True
        self._async.shutdown(wait=False, cancel_futures=True)
