"""The local runtime: ``template.yaml``'s stack on the embedded emulator, every function
in-process behind its real trigger. ``pitcrew local``, ``pitcrew invoke`` and the tests all
start it through ``LocalRuntime``.

Start-up, in order: load the template; check the configuration file; start the emulator;
provision the template's resources in it (``pitcrew.local.provision``); prepare each
function (``FunctionRunner``) and connect the emulator to them (``pitcrew.local.bridge``);
then start the triggers: one SQS poller per event source mapping, the scheduler for
schedule rules, and the API server. ``stop()`` undoes it all, in reverse.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pitcrew.local import environ
from pitcrew.local.emulator import CREDENTIALS, DEFAULT_PORT, Emulator, ensure_port_free
from pitcrew.local.errors import LocalRuntimeError, UnknownNameError

if TYPE_CHECKING:
    from pitcrew.local.api import ApiServer
    from pitcrew.local.bridge import Bridge
    from pitcrew.local.functions import FunctionRunner, Functions, Invocation
    from pitcrew.local.provision import Stack
    from pitcrew.local.schedule import Scheduler
    from pitcrew.local.sqs import SqsPoller
    from pitcrew.local.template import Template

log = logging.getLogger("pitcrew.local")

DEFAULT_API_PORT = 8000
LOCAL_CONFIG = Path("infra/local/pitcrew.yaml")
_API_EVENTS = ("Api", "HttpApi")
_RULE_EVENTS = ("Schedule", "EventBridgeRule", "CloudWatchEvent")
# Process environment variables the runtime sets while it runs (restored on stop): every
# AWS call made in this process, by a function or not, goes to the emulator.
_MASKED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE")


def resolve_config_source(explicit: str | Path | None, root: Path) -> str:
    """The configuration the functions read: ``--config``, else ``$PITCREW_CONFIG``, else
    ``infra/local/pitcrew.yaml`` next to the template, else where ``pitcrew.config`` looks by
    default. Files become absolute paths."""
    chosen = str(explicit) if explicit else os.environ.get("PITCREW_CONFIG") or ""
    if chosen.startswith("ssm:"):
        return chosen
    if chosen:
        path = Path(chosen)
    elif (root / LOCAL_CONFIG).is_file():
        path = root / LOCAL_CONFIG
    else:
        from pitcrew.config import default_config_source

        path = Path(default_config_source())
    return str(path.expanduser().resolve())


@dataclass(frozen=True)
class RotationTimer:
    """A secret's rotation schedule, fired by the scheduler like a schedule rule."""

    name: str
    secret_id: str
    lambda_arn: str
    scheduled_expression: str
    rules: dict[str, Any]

    @property
    def arn(self) -> str:
        return f"{self.secret_id}#rotation"

    @classmethod
    def from_properties(cls, logical_id: str, properties: dict[str, Any]) -> RotationTimer | None:
        lambda_arn = properties.get("RotationLambdaARN")
        if not lambda_arn:
            return None
        rules = dict(properties.get("RotationRules") or {})
        if "AutomaticallyAfterDays" in rules:
            rules["AutomaticallyAfterDays"] = int(rules["AutomaticallyAfterDays"])
        days = rules.get("AutomaticallyAfterDays", 30)
        expression = rules.get("ScheduleExpression") or (
            f"rate({days} day{'s' if days != 1 else ''})"
        )
        return cls(logical_id, str(properties["SecretId"]), str(lambda_arn), expression, rules)

    def request(self) -> dict[str, Any]:
        return {
            "SecretId": self.secret_id,
            "RotationLambdaARN": self.lambda_arn,
            "RotationRules": self.rules,
            "RotateImmediately": True,
        }


class LocalRuntime:
    """The whole stack, running locally. Use as a context manager or ``start()``/``stop()``.

    ``aws_port``/``api_port`` 0 pick free ports (tests). ``serve_api=False`` and
    ``triggers=False`` give the bare stack (``pitcrew invoke``). ``clock``/``sleep`` are the
    scheduler's (tests pass a fake clock).
    """

    def __init__(
        self,
        *,
        template: Template | None = None,
        template_path: str | Path | None = None,
        parameter_overrides: Mapping[str, str] | None = None,
        config: str | Path | None = None,
        aws_port: int = DEFAULT_PORT,
        api_port: int = DEFAULT_API_PORT,
        region: str = "us-east-1",
        stack_name: str = "pitcrew",
        serve_api: bool = True,
        triggers: bool = True,
        clock: Callable[[], dt.datetime] | None = None,
        sleep: Callable[[float], object] | None = None,
        sqs_wait_s: int = 1,
    ) -> None:
        self._template = template
        self._template_path = template_path
        self._parameter_overrides = dict(parameter_overrides or {})
        self._config = config
        self._api_port = api_port
        self.region = region
        self.stack_name = stack_name
        self._serve_api = serve_api
        self._triggers = triggers
        self._clock = clock
        self._sleep = sleep
        self._sqs_wait_s = sqs_wait_s
        self.emulator = Emulator(aws_port, region=region)
        self.config_source: str = ""
        self.generated_env: dict[str, str] = {}
        self.warnings: list[str] = []
        self.stack: Stack | None = None
        self.functions: Functions | None = None
        self.api: ApiServer | None = None
        self.pollers: list[SqsPoller] = []
        self.scheduler: Scheduler | None = None
        self.rotations: list[RotationTimer] = []
        self._bridge: Bridge | None = None
        self._saved_env: dict[str, str | None] = {}
        self._loggers_before: set[str] = set()
        self._started = False

    # ------------------------------------------------------------------ properties

    @property
    def template(self) -> Template:
        if self._template is None:
            from pitcrew.local.template import load_template

            self._template = load_template(self._template_path, self._parameter_overrides)
        return self._template

    @property
    def endpoint_url(self) -> str:
        return self.emulator.endpoint_url

    @property
    def api_url(self) -> str | None:
        return self.api.url if self.api is not None else None

    def client(self, service: str) -> Any:
        """A boto3 client on the emulator."""
        return self.emulator.client(service)

    # ------------------------------------------------------------------ start / stop

    def __enter__(self) -> LocalRuntime:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        started = time.perf_counter()
        template = self.template
        self.config_source = resolve_config_source(self._config, template.root)
        self._check_config()
        if self._serve_api:
            ensure_port_free(self._api_port, "API", "--port")
        steps: list[tuple[str, Callable[[], None]]] = [
            ("emulator", self.emulator.start),
            ("environment", self._point_process_at_emulator),
            ("provisioning", lambda: self._provision(template)),
            ("functions", self._prepare_functions),
        ]
        if self._triggers:
            steps += [
                ("rotations", self._start_rotations),
                ("sqs pollers", self._start_pollers),
                ("scheduler", self._start_scheduler),
            ]
        if self._serve_api:
            steps.append(("api", self._start_api))
        self._started = True
        self._loggers_before = set(logging.Logger.manager.loggerDict)
        try:
            for name, step in steps:
                began = time.perf_counter()
                step()
                log.debug("start-up: %s in %.2f s", name, time.perf_counter() - began)
        except BaseException:
            self.stop()
            raise
        log.debug("local runtime up in %.2f s", time.perf_counter() - started)

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.scheduler is not None:
            self.scheduler.stop()
        for poller in self.pollers:
            poller.request_stop()
        for poller in self.pollers:
            poller.stop()
        if self.api is not None:
            self.api.stop()
        if self.functions is not None:
            self.functions.close()
        if self._bridge is not None:
            self._bridge.uninstall()
        self.emulator.stop()
        self._restore_process_env()
        self._forget_function_loggers()

    # ------------------------------------------------------------------ steps

    def _check_config(self) -> None:
        from pitcrew.config import validate_file
        from pitcrew.errors import ConfigError

        if self.config_source.startswith("ssm:"):
            return  # read from the emulator's parameter when a function first loads it
        problems, source = validate_file(self.config_source)
        if problems:
            raise ConfigError(problems, source)

    def _point_process_at_emulator(self) -> None:
        environ.install()
        wanted: dict[str, str | None] = {
            "AWS_ENDPOINT_URL": self.emulator.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
            **dict.fromkeys(_MASKED),
        }
        base = os.environ.base if isinstance(os.environ, environ.ScopedEnviron) else os.environ
        for key, value in wanted.items():
            self._saved_env[key] = base.get(key)
            if value is None:
                base.pop(key, None)
            else:
                base[key] = value
        self._reset_process_caches()

    def _restore_process_env(self) -> None:
        if not self._saved_env:
            return
        base = os.environ.base if isinstance(os.environ, environ.ScopedEnviron) else os.environ
        for key, value in self._saved_env.items():
            if value is None:
                base.pop(key, None)
            else:
                base[key] = value
        self._saved_env.clear()
        environ.uninstall()
        self._reset_process_caches()

    @staticmethod
    def _reset_process_caches() -> None:
        # Clients and resolved references of an earlier emulator must not be reused.
        from pitcrew import aws, config

        aws.reset_clients()
        config.reset_config_cache()

    def _forget_function_loggers(self) -> None:
        """Drop the loggers the functions' Powertools ``Logger`` set up while running (their
        handlers hold the output streams of that time), as ending the functions' processes
        would in Lambda; a later runtime or test in this process then gets fresh ones."""
        manager = logging.Logger.manager
        for name in set(manager.loggerDict) - self._loggers_before:
            logger = manager.loggerDict.get(name)
            if isinstance(logger, logging.Logger) and getattr(logger, "init", False):
                for handler in logger.handlers[:]:
                    logger.removeHandler(handler)
                manager.loggerDict.pop(name, None)

    def _provision(self, template: Template) -> None:
        from pitcrew.local.provision import provision

        self.stack = provision(
            template,
            region=self.region,
            stack_name=self.stack_name,
            client_factory=self.emulator.client,
        )
        self.warnings.extend(self.stack.warnings)

    def _function_overrides(self) -> dict[str, str | None]:
        overrides: dict[str, str | None] = {
            "PITCREW_CONFIG": self.config_source,
            # X-Ray is not emulated: powertools' Tracer would try to reach a daemon.
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        overrides.update(self._generated_tokens())
        return overrides

    def _generated_tokens(self) -> dict[str, str]:
        """An operator API token for ``make run`` when the configuration reads it from an
        environment variable that is not set (shown in the banner)."""
        if self.config_source.startswith("ssm:"):
            return {}
        from pitcrew.config import load_config

        try:
            config = load_config(self.config_source)
        except Exception:  # already validated; nothing to add if it cannot be read now
            return {}
        token = config.api.token if config.api is not None else None
        reference = token.reference if token is not None else None
        if reference and reference.startswith("env:"):
            name = reference.removeprefix("env:")
            if not os.environ.get(name):
                self.generated_env[name] = secrets.token_urlsafe(24)
        return dict(self.generated_env)

    def _prepare_functions(self) -> None:
        from pitcrew.local.bridge import Bridge
        from pitcrew.local.functions import FunctionRunner, Functions

        stack = self._require_stack()
        base: dict[str, str | None] = {
            "AWS_ENDPOINT_URL": self.emulator.endpoint_url,
            "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
            **dict.fromkeys(_MASKED),
        }
        overrides = self._function_overrides()
        self.functions = Functions(
            FunctionRunner(fn, name=name, region=self.region, environment=base, overrides=overrides)
            for name, fn in stack.functions.items()
        )
        self._bridge = Bridge(self.functions, region=self.region, account_id=stack.account_id)
        self._bridge.install()
        self._bridge.register_functions(self.emulator.client)

    def _start_pollers(self) -> None:
        from pitcrew.local.sqs import SqsMapping, SqsPoller

        functions = self._require_functions()
        mappings: list[SqsMapping] = []
        for runner in functions:
            for event_name, event in runner.function.events.items():
                if event.get("Type") == "SQS":
                    mappings.append(
                        SqsMapping.from_event(runner.name, event_name, event.get("Properties", {}))
                    )
        stack = self._require_stack()
        for lid, resource in self.template.of_type("AWS::Lambda::EventSourceMapping").items():
            properties = stack.resolve(resource.properties)
            source = str(properties.get("EventSourceArn", ""))
            runner = functions.find(str(properties.get("FunctionName", "")))
            if ":sqs:" not in source or runner is None:
                self.warnings.append(f"{lid}: only SQS event source mappings run locally")
                continue
            mappings.append(
                SqsMapping.from_event(runner.name, lid, {**properties, "Queue": source})
            )
        sqs = self.emulator.client("sqs")
        for mapping in mappings:
            if not mapping.enabled:
                continue
            poller = SqsPoller(
                mapping,
                functions.get(mapping.function),
                sqs,
                region=self.region,
                wait_s=self._sqs_wait_s,
            )
            poller.start()
            self.pollers.append(poller)

    def _start_scheduler(self) -> None:
        from pitcrew.local.schedule import Scheduler

        bridge = self._require_bridge()
        kwargs: dict[str, Any] = {}
        if self._clock is not None:
            kwargs["clock"] = self._clock
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        rotations = list(self.rotations)
        self.scheduler = Scheduler(
            lambda: [*bridge.scheduled_rules(), *rotations], self._fire_rule, **kwargs
        )
        self.scheduler.start()

    def _start_rotations(self) -> None:
        """``AWS::SecretsManager::RotationSchedule``: rotate now, as CloudFormation has
        Secrets Manager do when it creates one, then on the schedule (``_start_scheduler``)."""
        stack = self._require_stack()
        for lid, resource in self.template.of_type("AWS::SecretsManager::RotationSchedule").items():
            if resource.condition is not None and not stack.condition(resource.condition):
                continue
            properties = stack.resolve(resource.properties) or {}
            rotation = RotationTimer.from_properties(lid, properties)
            if rotation is None:
                self.warnings.append(
                    f"AWS::SecretsManager::RotationSchedule {lid}: only RotationLambdaARN "
                    "rotations run locally (not HostedRotationLambda)"
                )
                continue
            self.rotations.append(rotation)
            if properties.get("RotateImmediatelyOnUpdate", True) not in (False, "false"):
                self._rotate(rotation)

    def _rotate(self, rotation: RotationTimer) -> None:
        secrets_manager = self.emulator.client("secretsmanager")
        try:
            secrets_manager.rotate_secret(**rotation.request())
        except Exception as exc:
            self.warnings.append(f"{rotation.name}: rotating {rotation.secret_id} failed: {exc}")

    def _api_runner(self) -> FunctionRunner | None:
        functions = self._require_functions()
        with_api = [
            r
            for r in functions
            if any(e.get("Type") in _API_EVENTS for e in r.function.events.values())
        ]
        if not with_api:
            named = functions.find("api")
            if named is None:
                self.warnings.append("no function has an Api event: the local API is off")
            return named
        chosen = next((r for r in with_api if r.name == "api"), with_api[0])
        for other in with_api:
            if other is not chosen:
                self.warnings.append(
                    f"{other.function.logical_id} has Api events but only "
                    f"{chosen.function.logical_id} is served locally"
                )
        return chosen

    def _start_api(self) -> None:
        from pitcrew.local.api import ApiServer

        runner = self._api_runner()
        if runner is None:
            return
        self.api = ApiServer(runner, port=self._api_port, stage=self._api_stage(runner))
        self.api.start()
        self.warnings.extend(self.api.warnings)

    def _api_stage(self, runner: FunctionRunner) -> Any:
        """The stage and id of the API the function's Api events belong to."""
        from pitcrew.local.api import Stage

        stack = self._require_stack()
        apis = self.template.of_type("AWS::Serverless::Api")
        chosen = None
        for event in runner.function.events.values():
            api_ref = (event.get("Properties") or {}).get("RestApiId")
            if isinstance(api_ref, str):
                chosen = next((lid for lid in apis if stack.refs.get(lid) == api_ref), None)
            if chosen:
                break
        if chosen is None:
            # SAM's implicit API (no RestApiId) is deployed to the stage "Prod".
            return Stage(
                api_id=stack.refs.get("ServerlessRestApi", "local"), account_id=stack.account_id
            )
        stage_name = stack.resolve(apis[chosen].properties.get("StageName", "Prod"))
        return Stage(name=str(stage_name), api_id=stack.refs[chosen], account_id=stack.account_id)

    # ------------------------------------------------------------------ operations

    def invoke(self, name: str, event: Any) -> Invocation:
        """Run one function once with ``event`` (``pitcrew invoke``)."""
        return self._require_functions().get(name).invoke(event, trigger="pitcrew invoke")

    def _fire_rule(self, rule: Any, when: dt.datetime) -> None:
        from pitcrew.local.schedule import scheduled_event

        if isinstance(rule, RotationTimer):
            self._rotate(rule)
            return

        event: dict[str, Any] = scheduled_event(
            rule.arn, self._require_stack().account_id, self.region, when
        )
        # The bridge takes events as moto holds them: epoch times, plus the ingestion time.
        event["time"] = when.timestamp()
        event["ingestion-time"] = time.time()
        self._require_bridge().deliver(rule, event)

    def schedule_names(self) -> dict[str, str]:
        """Every name ``fire()`` accepts -> the schedule rule's name. A bare event name that
        several functions use (``Daily``) is left out: it would fire only the first one's."""
        bridge = self._require_bridge()
        stack = self._require_stack()
        rules = {rule.name: rule for rule in bridge.scheduled_rules()}
        names = {name: name for name in rules}
        by_event_name: dict[str, set[str]] = {}
        for lid, value in stack.refs.items():
            if value in rules:
                names[lid] = value
        for runner in self._require_functions():
            fn = runner.function
            for event_name, event in fn.events.items():
                if event.get("Type") not in _RULE_EVENTS:
                    continue
                expression = (event.get("Properties") or {}).get("Schedule")
                rule_name = stack.refs.get(f"{fn.logical_id}{event_name}")
                if rule_name not in rules:
                    rule_name = next(
                        (
                            r.name
                            for r in rules.values()
                            if r.scheduled_expression == expression
                            and any(t.get("Arn") == fn.arn for t in r.targets)
                        ),
                        None,
                    )
                if rule_name is not None:
                    by_event_name.setdefault(event_name, set()).add(rule_name)
                    for alias in (f"{runner.name}.{event_name}", f"{fn.logical_id}{event_name}"):
                        names.setdefault(alias, rule_name)
        for event_name, rule_names in by_event_name.items():
            if len(rule_names) == 1:
                names.setdefault(event_name, rule_names.pop())
        return names

    def fire(self, name: str, when: dt.datetime | None = None) -> str:
        """Fire a schedule rule now (``--fire``): by rule name, logical id, or the
        function's event name (``Nightly``, ``cost_tracker.Nightly``). Returns the rule name."""
        names = self.schedule_names()
        rule_name = names.get(name)
        if rule_name is None:
            raise UnknownNameError("schedule rule", name, names)
        rule = self._require_bridge().find_rule(rule_name)
        if rule is None:
            raise UnknownNameError("schedule rule", name, names)
        self._fire_rule(rule, when or dt.datetime.now(dt.UTC))
        return rule_name

    # ------------------------------------------------------------------ helpers

    def _require_stack(self) -> Stack:
        if self.stack is None:
            raise LocalRuntimeError("the local runtime is not started")
        return self.stack

    def _require_functions(self) -> Functions:
        if self.functions is None:
            raise LocalRuntimeError("the local runtime is not started")
        return self.functions

    def _require_bridge(self) -> Bridge:
        if self._bridge is None:
            raise LocalRuntimeError("the local runtime is not started")
        return self._bridge
