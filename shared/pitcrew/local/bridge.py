"""Where the emulator meets the in-process functions: two narrow hooks into moto's backends.

* ``LambdaFunction.invoke``: every Lambda invocation moto makes or serves (the Lambda API on
  the emulator's port, Step Functions ``lambda:invoke`` and Lambda-ARN tasks, Secrets Manager
  rotation steps, SNS subscriptions) reaches the in-process function when the function is
  one of the stack's. Any other function is left to moto.
* ``events.Rule.send_to_targets``: a rule's Lambda targets that are stack functions receive
  the event asynchronously, as EventBridge delivers it, and state machine targets start an
  execution; other targets (SQS, logs, buses) are left to moto. Matching stays moto's (its
  implementation of EventBridge patterns); the hook adds what moto leaves out: disabled
  rules deliver nothing, and schedule-only rules receive scheduled events only
  (``pitcrew.local.schedule``), not everything put on their bus.
* ``StepFunctionsParserBackend.start_execution``: an execution started without a name gets a
  generated one, as in AWS (moto 5.2 names it ``None``, so a second one clashes).

The stack's functions are also registered in moto's Lambda backend (an execution role and a
function record with the real code, Environment, Timeout and MemorySize), so
``ListFunctions``/``GetFunction`` show them and services that check a function exists before
calling it (Secrets Manager) find it. The code itself never runs inside moto.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import io
import json
import logging
import re
import threading
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pitcrew.local.context import ClientContext

if TYPE_CHECKING:
    from pitcrew.local.functions import FunctionRunner, Functions

log = logging.getLogger("pitcrew.local")

_MAX_ZIP_BYTES = 10 * 1024 * 1024
_TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)

_lock = threading.Lock()
_active: Bridge | None = None
_originals: dict[str, Any] = {}


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None and isinstance(headers, Mapping):
        lowered = name.lower()
        value = next((v for k, v in headers.items() if str(k).lower() == lowered), None)
    return None if value is None else str(value)


def _client_context(encoded: str | None) -> ClientContext | None:
    if not encoded:
        return None
    try:
        data = json.loads(base64.b64decode(encoded))
    except ValueError:
        return None
    return ClientContext(client=data.get("client"), custom=data.get("custom"), env=data.get("env"))


def iso_time(value: Any) -> str:
    """EventBridge's ``time`` field (``2024-11-19T06:00:00Z``) from moto's float or a string."""
    if isinstance(value, int | float):
        moment = dt.datetime.fromtimestamp(float(value), tz=dt.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def event_for_target(event: Mapping[str, Any], target: Mapping[str, Any]) -> Any:
    """What a rule target receives: the event as EventBridge shapes it, or the target's
    ``Input`` / ``InputPath`` / ``InputTransformer`` applied to it."""
    shaped = {k: v for k, v in event.items() if k != "ingestion-time"}
    if "time" in shaped:
        shaped["time"] = iso_time(shaped["time"])
    if target.get("Input"):
        return json.loads(target["Input"])
    if target.get("InputPath"):
        from jsonpath_ng.ext import parse

        matches = parse(target["InputPath"]).find(shaped)
        return matches[0].value if matches else None
    transformer = target.get("InputTransformer")
    if transformer:
        return transform_input(transformer, shaped)
    return shaped


_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")


def transform_input(transformer: Mapping[str, Any], event: Mapping[str, Any]) -> Any:
    """EventBridge's input transformer: ``InputPathsMap`` values put into ``InputTemplate``,
    as JSON where a placeholder stands for a value and as text inside a JSON string (moto
    inserts every value as text, which breaks ``{"key": <value>}`` templates)."""
    from jsonpath_ng.ext import parse

    values: dict[str, Any] = {"aws.events.event.json": dict(event), "aws.events.event": dict(event)}
    for name, path in (transformer.get("InputPathsMap") or {}).items():
        matches = parse(path).find(dict(event))
        values[name] = matches[0].value if matches else None
    template = str(transformer.get("InputTemplate", ""))
    is_json = template.lstrip()[:1] in ("{", "[", '"')
    out: list[str] = []
    in_string = escaped = False
    index = 0
    while index < len(template):
        char = template[index]
        match = _PLACEHOLDER.match(template, index) if char == "<" else None
        if match and match.group(1) in values:
            value = values[match.group(1)]
            if is_json and not in_string:
                out.append(json.dumps(value))
            else:
                text = value if isinstance(value, str) else json.dumps(value)
                out.append(json.dumps(text)[1:-1] if is_json else text)
            index = match.end()
            continue
        if is_json:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = in_string
            elif char == '"':
                in_string = not in_string
        out.append(char)
        index += 1
    text = "".join(out)
    if is_json:
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


class Bridge:
    """The hooks' view of the running stack: its functions, account and region."""

    def __init__(self, functions: Functions, *, region: str, account_id: str) -> None:
        self.functions = functions
        self.region = region
        self.account_id = account_id
        # (secret, token) of rotations a step of which failed: Secrets Manager stops there.
        self._failed_rotations: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ installation

    def install(self) -> None:
        """Put the hooks in place (one bridge per process at a time)."""
        global _active  # noqa: PLW0603 - moto's backends are process-wide, so is the hook
        from moto.awslambda.models import LambdaFunction
        from moto.events.models import Rule
        from moto.secretsmanager.models import SecretsManagerBackend
        from moto.stepfunctions import responses

        with _lock:
            if _active is not None and _active is not self:
                raise RuntimeError("another local runtime is already running in this process")
            if not _originals:
                _originals["invoke"] = LambdaFunction.invoke
                _originals["send_to_targets"] = Rule.send_to_targets
                _originals["get_backend"] = responses.get_backend
                _originals["rotate_secret"] = SecretsManagerBackend.rotate_secret
                LambdaFunction.invoke = _invoke  # type: ignore[method-assign, assignment]
                SecretsManagerBackend.rotate_secret = _rotate_secret  # type: ignore[method-assign, assignment]
                Rule.send_to_targets = _send_to_targets  # type: ignore[method-assign, assignment]
                # The interpreter (a 2 s import) loads with the first state machine; its hook
                # goes in then.
                responses.get_backend = _get_sfn_backend  # type: ignore[assignment]
            _active = self

    def uninstall(self) -> None:
        global _active  # noqa: PLW0603
        from moto.awslambda.models import LambdaFunction
        from moto.events.models import Rule
        from moto.secretsmanager.models import SecretsManagerBackend
        from moto.stepfunctions import responses

        with _lock:
            if _active is not self:
                return
            _active = None
            if _originals:
                LambdaFunction.invoke = _originals.pop("invoke")  # type: ignore[method-assign]
                SecretsManagerBackend.rotate_secret = _originals.pop("rotate_secret")  # type: ignore[method-assign]
                Rule.send_to_targets = _originals.pop("send_to_targets")  # type: ignore[method-assign]
                responses.get_backend = _originals.pop("get_backend")
                if "start_execution" in _originals:
                    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

                    StepFunctionsParserBackend.start_execution = _originals.pop(  # type: ignore[method-assign]
                        "start_execution"
                    )

    def register_functions(self, client_factory: Any) -> None:
        """Create each function's execution role and Lambda record in the emulator."""
        iam = client_factory("iam")
        lam = client_factory("lambda")
        for runner in self.functions:
            fn = runner.function
            role_name = f"{fn.logical_id}Role"[:64]
            try:
                role_arn = iam.create_role(
                    RoleName=role_name, AssumeRolePolicyDocument=_TRUST_POLICY
                )["Role"]["Arn"]
            except iam.exceptions.EntityAlreadyExistsException:
                role_arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]
            spec: dict[str, Any] = {
                "FunctionName": fn.function_name,
                "Runtime": "python3.11",
                "Role": role_arn,
                "Handler": fn.handler,
                "Code": {"ZipFile": _zip_code(fn.code_dir)},
                "Timeout": int(fn.timeout),
                "MemorySize": int(fn.memory),
                "Environment": {"Variables": {k: str(v) for k, v in fn.environment.items()}},
            }
            with contextlib.suppress(lam.exceptions.ResourceConflictException):
                lam.create_function(**spec)

    # ------------------------------------------------------------------ delivery

    def deliver(self, rule: Any, event: Mapping[str, Any], transform_input: bool = True) -> None:
        """Send a matched event to the rule's targets: stack functions in-process and
        asynchronously; every other target through moto."""
        for target in rule.targets:
            arn = str(target.get("Arn", ""))
            if ":states:" in arn:
                self._start_execution(rule, event, target)
                continue
            if ":lambda:" not in arn:
                self._deliver_by_moto(rule, event, target, transform_input)
                continue
            runner = self.functions.find(arn)
            if runner is None:
                log.warning(
                    "rule %s: target %s is not a function of the stack; event dropped",
                    rule.name,
                    arn,
                )
                continue
            try:
                payload = event_for_target(event, target)
            except (ValueError, KeyError) as exc:
                log.warning("rule %s: cannot build the input for %s: %s", rule.name, arn, exc)
                continue
            self.functions.invoke_async(runner, payload, trigger=f"events rule {rule.name}")

    @staticmethod
    def _deliver_by_moto(
        rule: Any, event: Mapping[str, Any], target: dict[str, Any], transform_input: bool
    ) -> None:
        clone = copy.copy(rule)
        clone.targets = [target]
        try:
            _originals["send_to_targets"](clone, copy.deepcopy(dict(event)), transform_input)
        except NotImplementedError:
            log.warning(
                "rule %s: the emulator cannot deliver to %s; event dropped",
                rule.name,
                target["Arn"],
            )

    def _start_execution(
        self, rule: Any, event: Mapping[str, Any], target: Mapping[str, Any]
    ) -> None:
        from moto.stepfunctions import responses

        try:
            payload = event_for_target(event, target)
            backend = responses.get_backend(self.account_id, self.region)
            execution = backend.start_execution(
                target["Arn"], name=str(uuid.uuid4()), execution_input=json.dumps(payload)
            )
        except Exception as exc:  # a missing state machine must not fail PutEvents
            log.warning("rule %s: cannot start %s: %s", rule.name, target["Arn"], exc)
            return
        log.info("%s <- events rule %s: execution %s", target["Arn"], rule.name, execution.name)

    def invoke(
        self, runner: FunctionRunner, body: Any, headers: Any, response_headers: Any
    ) -> bytes:
        """A Lambda ``Invoke`` of a stack function, answered the way Lambda answers it."""
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        event = json.loads(body) if body else {}
        invocation_type = _header(headers, "X-Amz-Invocation-Type") or "RequestResponse"
        trigger = "lambda Invoke"
        if isinstance(event, dict) and {"Step", "SecretId", "ClientRequestToken"} <= set(event):
            trigger = f"secretsmanager rotation {event['Step']}"
        if invocation_type == "DryRun":
            return b""
        rotation = (
            (str(event["SecretId"]), str(event["ClientRequestToken"]))
            if trigger.startswith("secretsmanager rotation")
            else None
        )
        if rotation is not None and rotation in self._failed_rotations:
            # moto goes on with the next step after a failed one; Secrets Manager does not.
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {
                    "errorType": "RotationStopped",
                    "errorMessage": f"{event['Step']} not run: an earlier step of this "
                    "rotation failed",
                }
            ).encode()
        if invocation_type == "Event":
            self.functions.invoke_async(runner, event, trigger=f"{trigger} (async)")
            return b""
        invocation = runner.invoke(
            event,
            trigger=trigger,
            client_context=_client_context(_header(headers, "X-Amz-Client-Context")),
        )
        if not invocation.ok:
            response_headers["x-amz-function-error"] = invocation.function_error
            if rotation is not None:
                self._failed_rotations.add(rotation)
        elif trigger == "secretsmanager rotation finishSecret":
            self._end_rotation(event["SecretId"], event["ClientRequestToken"])
        payload = invocation.payload_bytes()
        response_headers["Content-Length"] = str(len(payload))
        return payload

    def _end_rotation(self, secret_id: str, token: str) -> None:
        """Once finishSecret has made the new version AWSCURRENT, AWSPENDING on that same
        version means "rotation complete" to Secrets Manager; moto 5.2 reads it as "still in
        progress" and refuses every later RotateSecret. Dropping the label there keeps
        rotation repeatable, as in AWS."""
        from moto.secretsmanager.models import secretsmanager_backends

        try:
            secret = secretsmanager_backends[self.account_id][self.region].secrets[secret_id]
        except KeyError:
            return
        stages = secret.versions.get(token, {}).get("version_stages", [])
        if "AWSCURRENT" in stages and "AWSPENDING" in stages:
            stages.remove("AWSPENDING")

    def scheduled_rules(self) -> list[Any]:
        """The emulator's enabled rules that have a schedule expression (default bus)."""
        from moto.events.models import events_backends

        backend = events_backends[self.account_id][self.region]
        found = []
        for bus in list(backend.event_buses.values()):
            for rule in list(bus.rules.values()):
                if rule.scheduled_expression and rule.state != "DISABLED":
                    found.append(rule)
        return found

    def find_rule(self, name: str) -> Any | None:
        from moto.events.models import events_backends

        backend = events_backends[self.account_id][self.region]
        for bus in list(backend.event_buses.values()):
            rule = bus.rules.get(name)
            if rule is not None:
                return rule
        return None


def _zip_code(code_dir: Path) -> bytes:
    """The function's code as Lambda would store it (a placeholder when it is too large)."""
    buffer = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if code_dir.is_dir():
            for path in sorted(code_dir.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    total += path.stat().st_size
                    if total > _MAX_ZIP_BYTES:
                        break
                    archive.write(path, path.relative_to(code_dir).as_posix())
        if total == 0 or total > _MAX_ZIP_BYTES:
            archive.writestr("README.txt", f"runs in-process from {code_dir}\n")
    return buffer.getvalue()


# --- the hooks moto calls (module functions, so uninstall restores the originals) -------------


def _invoke(function: Any, body: Any, headers: Any, response_headers: Any) -> str | bytes:
    bridge = _active
    runner = bridge.functions.find(function.function_arn) if bridge is not None else None
    if bridge is None or runner is None:
        answer: str | bytes = _originals["invoke"](function, body, headers, response_headers)
        return answer
    return bridge.invoke(runner, body, headers, response_headers)


def _rotate_secret(backend: Any, secret_id: str, *args: Any, **kwargs: Any) -> Any:
    # moto 5.2 makes the new version the default one (what GetSecretValue without a stage
    # answers) after invoking the four steps, whatever their outcome. Secrets Manager answers
    # with AWSCURRENT, which a failed rotation leaves on the old version.
    answer = _originals["rotate_secret"](backend, secret_id, *args, **kwargs)
    secret = backend.secrets[secret_id]
    for version_id, version in secret.versions.items():
        if "AWSCURRENT" in version.get("version_stages", []):
            secret.set_default_version_id(version_id)
            break
    return answer


def _send_to_targets(rule: Any, original_event: Any, transform_input: bool = True) -> None:
    # EventBridge: a disabled rule delivers nothing; a rule with only a schedule expression
    # has no event pattern and matches scheduled events only (moto would match everything).
    if rule.state == "DISABLED":
        return
    if rule.scheduled_expression and not rule.event_pattern.get_pattern():
        return
    bridge = _active
    if bridge is None:
        _originals["send_to_targets"](rule, original_event, transform_input)
        return
    if not rule.event_pattern.matches_event(original_event):
        return
    bridge.deliver(rule, original_event, transform_input)


def _get_sfn_backend(account_id: str, region: str) -> Any:
    backend = _originals["get_backend"](account_id, region)
    if (
        "start_execution" not in _originals
        and type(backend).__name__ == "StepFunctionsParserBackend"
    ):
        with _lock:
            if "start_execution" not in _originals:
                cls = type(backend)
                _originals["start_execution"] = cls.start_execution
                cls.start_execution = _start_execution
    return backend


def _start_execution(
    backend: Any,
    state_machine_arn: str,
    name: str | None = None,
    execution_input: str | None = None,
    trace_header: str | None = None,
) -> Any:
    return _originals["start_execution"](
        backend, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header
    )
