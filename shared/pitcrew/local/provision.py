"""Create template.yaml's resources in an AWS emulator (moto), from the template itself, so the
local stack has the same tables, queues, buses, rules, parameters, secrets and state machines
as the deployed one.

Functions are not created in the emulator (moto would need Docker to run them): each becomes
a ``LocalFunction`` for the local runtime to run in-process. What the emulator cannot do is
said in ``Stack.warnings``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from pitcrew.errors import ConfigError, ServiceError
from pitcrew.local.template import Resource, Template, split_sub

ClientFactory = Callable[[str], Any]

# Resources the emulator does not enforce (permissions, policies): skipped without a word.
_NOT_ENFORCED_PREFIXES = ("AWS::IAM::",)
_NOT_ENFORCED = frozenset(
    {
        "AWS::Events::EventBusPolicy",
        "AWS::Lambda::Permission",
        "AWS::SNS::TopicPolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::SecretsManager::ResourcePolicy",
    }
)
# Rule targets and subscriptions moto delivers itself; it raises NotImplementedError from
# PutEvents for any other matching target (a Lambda function, a state machine).
_MOTO_DELIVERS = ("sqs", "logs", "events")

_NO_VALUE = object()  # what AWS::NoValue resolves to: the key or item disappears
# `${Name}`, `${Resource.Attribute}` and the escape `${!Literal}` in Fn::Sub.
_SUB_TOKEN = re.compile(r"\$\{([^}]*)\}")


class _Unresolvable(ConfigError):
    """An intrinsic function that cannot be resolved in this stack."""

    def __init__(self, problem: str, source: str) -> None:
        super().__init__([problem], source)


@dataclass
class LocalFunction:
    """A ``AWS::Serverless::Function`` as the local runtime runs it, every value resolved."""

    name: str
    logical_id: str
    function_name: str
    arn: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout: int
    memory: int
    events: dict[str, dict[str, Any]]
    layers: tuple[Path, ...] = ()  # content directories of the template's layers it uses
    runtime: str = "python3.11"


@dataclass
class Stack:
    """The provisioned stack: physical names, ``Ref`` and ``Fn::GetAtt`` values, functions."""

    template: Template
    region: str
    account_id: str
    stack_name: str = "pitcrew"
    refs: dict[str, str] = field(default_factory=dict)
    attrs: dict[tuple[str, str], str] = field(default_factory=dict)
    functions: dict[str, LocalFunction] = field(default_factory=dict)
    created: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Resources that exist only as names (not emulated): their attributes are stand-ins.
    stand_ins: dict[str, str] = field(default_factory=dict)
    # Layer ARN -> its ContentUri directory, for the functions that use the layer.
    _layer_dirs: dict[str, Path] = field(default_factory=dict, init=False, repr=False)
    _conditions: dict[str, bool] = field(default_factory=dict, init=False, repr=False)

    @property
    def partition(self) -> str:
        if self.region.startswith("cn-"):
            return "aws-cn"
        if self.region.startswith("us-gov-"):
            return "aws-us-gov"
        return "aws"

    @property
    def url_suffix(self) -> str:
        return "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com"

    def arn(self, service: str, resource: str, *, region: bool = True) -> str:
        where = self.region if region else ""
        return f"arn:{self.partition}:{service}:{where}:{self.account_id}:{resource}"

    def physical_name(self, logical_id: str, max_length: int = 128) -> str:
        """The name CloudFormation would give a resource with no name of its own:
        ``{stack}-{LogicalId}-{SUFFIX}``, the suffix stable per stack name and logical id."""
        digest = hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).digest()
        suffix = base64.b32encode(digest).decode()[:12]
        return f"{self.stack_name}-{logical_id}"[: max_length - len(suffix) - 1] + f"-{suffix}"

    def condition(self, name: str) -> bool:
        """The value of one of the template's Conditions."""
        if name not in self._conditions:
            if name not in self.template.conditions:
                raise self._error(f"no condition named {name!r}")
            self._conditions[name] = bool(self._resolve(self.template.conditions[name]))
        return self._conditions[name]

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function resolved, at any depth; keys and items that
        resolve to ``AWS::NoValue`` are dropped (a top-level NoValue gives None)."""
        resolved = self._resolve(value)
        return None if resolved is _NO_VALUE else resolved

    # -- resolution ------------------------------------------------------------------------

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = (self._resolve(item) for item in value)
            return [item for item in items if item is not _NO_VALUE]
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, arg),) = value.items()
                handler = _INTRINSICS.get(key)
                if handler is not None:
                    return handler(self, arg)
            resolved = {key: self._resolve(item) for key, item in value.items()}
            return {key: item for key, item in resolved.items() if item is not _NO_VALUE}
        return value

    def _error(self, problem: str) -> _Unresolvable:
        return _Unresolvable(problem, str(self.template.path))

    def _pseudo(self, name: str) -> Any:
        values: dict[str, Any] = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": self.url_suffix,
            "AWS::NoValue": _NO_VALUE,
            "AWS::NotificationARNs": [],
            "AWS::StackId": self.arn(
                "cloudformation",
                f"stack/{self.stack_name}/{uuid.uuid5(uuid.NAMESPACE_URL, self.stack_name)}",
            ),
        }
        return values[name]

    def _ref(self, name: Any) -> Any:
        if not isinstance(name, str):
            raise self._error(f"Ref takes a name, not {name!r}")
        if name.startswith("AWS::"):
            try:
                return self._pseudo(name)
            except KeyError:
                raise self._error(f"Ref names no pseudo parameter {name!r}") from None
        if name in self.template.parameters:
            value = self.template.parameters[name]
            kind = self.template.parameter_types.get(name, "String")
            is_list = kind == "CommaDelimitedList" or kind.startswith("List<")
            return value.split(",") if is_list else value
        if name in self.refs:
            return self.refs[name]
        owner = name.split(".", 1)[0]
        if owner != name and owner in self.refs:  # SAM's `!Ref Function.Alias` and the like
            return self.refs[owner]
        if name in self.template.generated:
            return self.stand_in(name, self.template.generated[name][1])
        raise self._error(f"Ref {name!r}: no such parameter, or that resource was not created")

    def _get_att(self, arg: Any) -> str:
        parts = arg.split(".", 1) if isinstance(arg, str) else self._resolve(arg)
        if not (isinstance(parts, list) and len(parts) == 2):
            raise self._error(f"Fn::GetAtt takes [Resource, Attribute], not {arg!r}")
        lid, attribute = parts
        if (lid, attribute) in self.attrs:
            return self.attrs[lid, attribute]
        if lid in self.template.generated and lid not in self.refs:
            self.stand_in(lid, self.template.generated[lid][1])
        if lid in self.stand_ins:
            return self._stand_in_attribute(lid, attribute)
        if lid in self.refs:
            known = self._attributes_of(lid) or "none"
            raise self._error(
                f"Fn::GetAtt {lid}.{attribute}: the emulated resource has no such attribute "
                f"(it has {known})"
            )
        raise self._error(f"Fn::GetAtt {lid}.{attribute}: no such resource was created")

    def _attributes_of(self, lid: str) -> str:
        return ", ".join(attribute for owner, attribute in self.attrs if owner == lid)

    def stand_in(self, lid: str, kind: str) -> str:
        """Record a resource that is not emulated; its Ref is a plausible physical name."""
        if lid not in self.refs:
            self.refs[lid] = self.physical_name(lid, 64)
            self.stand_ins[lid] = kind
        return self.refs[lid]

    def _stand_in_attribute(self, lid: str, attribute: str) -> str:
        name = self.refs[lid]
        if attribute != "Arn":
            return name
        _, service, kind = [*self.stand_ins[lid].split("::"), "", ""][:3]
        if service == "IAM":
            return self.arn("iam", f"{kind.lower()}/{name}", region=False)
        return self.arn(service.lower(), f"{kind.lower()}/{name}")

    def _sub(self, arg: Any) -> str:
        try:
            text, variables = split_sub(arg)
        except ValueError as exc:
            raise self._error(str(exc)) from None
        values = {name: self._resolve(value) for name, value in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name.startswith("!"):
                return "${" + match.group(1)[1:] + "}"
            if name not in values:
                is_attribute = "." in name and not name.startswith("AWS::")
                values[name] = self._get_att(name) if is_attribute else self._ref(name)
            value = values[name]
            if isinstance(value, list | dict):
                raise self._error(f"Fn::Sub ${{{name}}} is not a string: {value!r}")
            return _text(value)

        return _SUB_TOKEN.sub(substitute, text)

    def _join(self, arg: Any) -> str:
        delimiter, items = self._pair(arg, "Fn::Join")
        items = self._resolve(items)
        if not isinstance(items, list):
            raise self._error(f"Fn::Join needs a list, not {items!r}")
        return str(delimiter).join(_text(item) for item in items)

    def _select(self, arg: Any) -> Any:
        index, items = self._pair(arg, "Fn::Select")
        index, items = self._resolve(index), self._resolve(items)
        try:
            return items[int(index)]
        except (IndexError, TypeError, ValueError):
            raise self._error(f"Fn::Select: no item {index!r} in {items!r}") from None

    def _split(self, arg: Any) -> list[str]:
        delimiter, text = self._pair(arg, "Fn::Split")
        return _text(self._resolve(text)).split(_text(self._resolve(delimiter)))

    def _if(self, arg: Any) -> Any:
        if not (isinstance(arg, list) and len(arg) == 3):
            raise self._error(f"Fn::If takes [condition, then, else], not {arg!r}")
        return self._resolve(arg[1] if self.condition(arg[0]) else arg[2])

    def _equals(self, arg: Any) -> bool:
        left, right = self._pair(arg, "Fn::Equals")
        return _text(self._resolve(left)) == _text(self._resolve(right))

    def _not(self, arg: Any) -> bool:
        if not (isinstance(arg, list) and len(arg) == 1):
            raise self._error(f"Fn::Not takes [condition], not {arg!r}")
        return not self._resolve(arg[0])

    def _and(self, arg: Any) -> bool:
        return all(self._resolve(item) for item in arg)

    def _or(self, arg: Any) -> bool:
        return any(self._resolve(item) for item in arg)

    def _condition_ref(self, name: Any) -> bool:
        return self.condition(name)

    def _find_in_map(self, arg: Any) -> Any:
        if not (isinstance(arg, list) and len(arg) in (3, 4)):
            raise self._error(f"Fn::FindInMap takes [map, key, key], not {arg!r}")
        names = [self._resolve(item) for item in arg[:3]]
        try:
            return self.template.mappings[names[0]][_text(names[1])][_text(names[2])]
        except (KeyError, TypeError):
            if len(arg) == 4 and isinstance(arg[3], dict) and "DefaultValue" in arg[3]:
                return self._resolve(arg[3]["DefaultValue"])
            raise self._error(f"Fn::FindInMap: nothing at {names}") from None

    def _get_azs(self, arg: Any) -> list[str]:
        region = self._resolve(arg) or self.region
        return [f"{region}{zone}" for zone in "abc"]

    def _import_value(self, arg: Any) -> Any:
        raise self._error(
            f"Fn::ImportValue {self._resolve(arg)!r}: the local emulator runs this stack only"
        )

    def _base64(self, arg: Any) -> str:
        return base64.b64encode(_text(self._resolve(arg)).encode()).decode()

    def _to_json_string(self, arg: Any) -> str:
        return json.dumps(self._resolve(arg), separators=(",", ":"))

    def _length(self, arg: Any) -> int:
        return len(self._resolve(arg))

    def _pair(self, arg: Any, function: str) -> tuple[Any, Any]:
        if not (isinstance(arg, list) and len(arg) == 2):
            raise self._error(f"{function} takes two arguments, not {arg!r}")
        return arg[0], arg[1]


def _not_supported(name: str) -> Callable[[Stack, Any], Any]:
    def fail(stack: Stack, arg: Any) -> Any:
        raise stack._error(f"{name} is not supported by the local emulator")

    return fail


_INTRINSICS: dict[str, Callable[[Stack, Any], Any]] = {
    "Ref": Stack._ref,
    "Fn::GetAtt": Stack._get_att,
    "Fn::Sub": Stack._sub,
    "Fn::Join": Stack._join,
    "Fn::Select": Stack._select,
    "Fn::Split": Stack._split,
    "Fn::If": Stack._if,
    "Fn::Equals": Stack._equals,
    "Fn::Not": Stack._not,
    "Fn::And": Stack._and,
    "Fn::Or": Stack._or,
    "Condition": Stack._condition_ref,
    "Fn::FindInMap": Stack._find_in_map,
    "Fn::GetAZs": Stack._get_azs,
    "Fn::ImportValue": Stack._import_value,
    "Fn::Base64": Stack._base64,
    "Fn::ToJsonString": Stack._to_json_string,
    "Fn::Length": Stack._length,
    "Fn::Cidr": _not_supported("Fn::Cidr"),
    "Fn::Transform": _not_supported("Fn::Transform"),
}


def _text(value: Any) -> str:
    """A scalar as CloudFormation turns it into a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# -- provisioning ----------------------------------------------------------------------------


def emulator_clients(endpoint_url: str, region: str) -> ClientFactory:
    """boto3 clients for an emulator at ``endpoint_url``, with dummy credentials (so boto3
    never looks for real ones), one per service."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - the emulator takes any credentials
        region_name=region,
    )
    config = Config(
        connect_timeout=3, read_timeout=30, retries={"mode": "standard", "max_attempts": 3}
    )
    lock = threading.Lock()  # a boto3 session is not thread-safe; its clients are

    @functools.cache
    def client(service: str) -> Any:
        with lock:
            return session.client(service, endpoint_url=endpoint_url, config=config)

    return client


def provision(
    template: Template,
    *,
    region: str = "us-east-1",
    stack_name: str = "pitcrew",
    client_factory: ClientFactory | None = None,
    invocation_targets: bool = True,
) -> Stack:
    """Create every resource of ``template`` in the emulator the clients reach, top to bottom.

    Running it again against the same emulator reuses what exists. ``invocation_targets``:
    also attach rule targets and SNS subscriptions that invoke a function or a state machine
    (as AWS has them). moto cannot deliver to those: its PutEvents raises NotImplementedError
    when a matching rule has one, so pass False unless something delivers them (the local
    runtime's dispatcher); rule patterns and schedules are created either way.
    """
    if client_factory is None:
        from pitcrew import aws

        def client_factory(service: str) -> Any:
            return aws.client(service, region)

    clients = functools.cache(client_factory)
    try:
        account_id = clients("sts").get_caller_identity()["Account"]
    except (ClientError, BotoCoreError) as exc:
        raise ServiceError("emulator", f"cannot reach the AWS emulator: {exc}") from exc
    stack = Stack(template=template, region=region, account_id=account_id, stack_name=stack_name)
    run = _Run(stack, clients, invocation_targets)
    for resource in template.resources.values():
        if resource.condition is not None and not stack.condition(resource.condition):
            continue
        provisioner = _provisioner_for(resource.type)
        try:
            provisioner(run, resource)
        except (ClientError, ParamValidationError) as exc:
            problem = f"Resources.{resource.logical_id} ({resource.type}): {exc}"
            raise ConfigError([problem], str(template.path)) from exc
        except BotoCoreError as exc:
            raise ServiceError("emulator", f"{resource.logical_id}: {exc}") from exc
    return stack


@dataclass
class _Run:
    stack: Stack
    clients: ClientFactory
    invocation_targets: bool

    def props(self, resource: Resource) -> dict[str, Any]:
        return self.stack.resolve(resource.properties) or {}

    def record(self, lid: str, kind: str, physical_id: str, ref: str, **attrs: Any) -> None:
        self.stack.created.append((lid, kind, physical_id))
        self.stack.refs[lid] = ref
        for attribute, value in attrs.items():
            if value is not None:
                self.stack.attrs[lid, attribute] = str(value)

    def warn(self, resource: Resource, problem: str) -> None:
        self.stack.warnings.append(f"{resource.type} {resource.logical_id}: {problem}")

    def delivers(self, arn: str) -> bool:
        """Whether a target or endpoint may be attached (see ``invocation_targets``)."""
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        return self.invocation_targets or service in _MOTO_DELIVERS


Provisioner = Callable[[_Run, Resource], None]


def _provisioner_for(kind: str) -> Provisioner:
    if kind in _PROVISIONERS:
        return _PROVISIONERS[kind]
    if kind in _NOT_ENFORCED or kind.startswith(_NOT_ENFORCED_PREFIXES):
        return _not_enforced
    return _not_emulated


def _not_enforced(run: _Run, resource: Resource) -> None:
    run.stack.stand_in(resource.logical_id, resource.type)


def _not_emulated(run: _Run, resource: Resource) -> None:
    run.stack.stand_in(resource.logical_id, resource.type)
    run.warn(resource, "not emulated locally; references to it get stand-in values")


def _served_by_local_api(run: _Run, resource: Resource) -> None:
    # A REST API id is 10 lowercase letters and digits.
    api_id = hashlib.sha256(f"{run.stack.stack_name}/{resource.logical_id}".encode())
    run.stack.refs[resource.logical_id] = api_id.hexdigest()[:10]
    run.stack.stand_ins[resource.logical_id] = resource.type
    run.warn(resource, "served by pitcrew's local API (--port), not by the emulator")


# -- DynamoDB


_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")


def _dynamodb_table(run: _Run, resource: Resource) -> None:
    props = run.props(resource)
    _create_table(run, resource, props)


def _simple_table(run: _Run, resource: Resource) -> None:
    props = run.props(resource)
    key = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
    attribute_type = {"String": "S", "Number": "N", "Binary": "B"}.get(key["Type"], key["Type"])
    table = {
        "TableName": props.get("TableName"),
        "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": attribute_type}],
        "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
        "SSESpecification": props.get("SSESpecification"),
        "Tags": [{"Key": k, "Value": v} for k, v in (props.get("Tags") or {}).items()],
    }
    if "ProvisionedThroughput" in props:
        table |= {
            "BillingMode": "PROVISIONED",
            "ProvisionedThroughput": props["ProvisionedThroughput"],
        }
    else:
        table["BillingMode"] = "PAY_PER_REQUEST"
    _create_table(run, resource, {k: v for k, v in table.items() if v})


def _create_table(run: _Run, resource: Resource, props: dict[str, Any]) -> None:
    ddb = run.clients("dynamodb")
    name = props.get("TableName") or run.stack.physical_name(resource.logical_id, 255)
    billing = props.get("BillingMode", "PROVISIONED")
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": billing,
    }
    if billing == "PROVISIONED":
        request["ProvisionedThroughput"] = _throughput(props["ProvisionedThroughput"])
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(key):
            request[key] = [_index(index, billing) for index in props[key]]
    stream = props.get("StreamSpecification")
    if stream:
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": stream["StreamViewType"],
        }
    sse = props.get("SSESpecification")
    if sse:
        request["SSESpecification"] = {"Enabled": bool(sse.get("SSEEnabled"))}
        if sse.get("SSEType"):
            request["SSESpecification"]["SSEType"] = sse["SSEType"]
    for key in ("Tags", "TableClass", "DeletionProtectionEnabled"):
        if key in props:
            request[key] = props[key]
    try:
        table = ddb.create_table(**request)["TableDescription"]
    except ClientError as exc:
        if _error_code(exc) != "ResourceInUseException":
            raise
        table = ddb.describe_table(TableName=name)["Table"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        _ignoring(
            "ValidationException",  # "TimeToLive is already enabled", on a second run
            ddb.update_time_to_live,
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )
    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr and pitr.get("PointInTimeRecoveryEnabled"):
        ddb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    run.record(
        resource.logical_id,
        resource.type,
        name,
        name,
        Arn=table["TableArn"],
        StreamArn=table.get("LatestStreamArn"),
    )


def _throughput(value: dict[str, Any]) -> dict[str, int]:
    return {key: int(units) for key, units in value.items()}


def _index(index: dict[str, Any], billing: str) -> dict[str, Any]:
    picked = {key: index[key] for key in _INDEX_KEYS if key in index}
    if billing == "PAY_PER_REQUEST":
        picked.pop("ProvisionedThroughput", None)
    elif "ProvisionedThroughput" in picked:
        picked["ProvisionedThroughput"] = _throughput(picked["ProvisionedThroughput"])
    return picked


def _ignoring(code: str, call: Callable[..., Any], **kwargs: Any) -> None:
    try:
        call(**kwargs)
    except ClientError as exc:
        if _error_code(exc) != code:
            raise


# -- SQS and SNS


_QUEUE_ATTRIBUTES = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)


def _attribute_text(value: Any) -> str:
    return _json_text(value) if isinstance(value, dict | list) else _text(value)


def _fifo_name(run: _Run, resource: Resource, props: dict[str, Any], key: str, limit: int) -> str:
    if props.get(key):
        return str(props[key])
    fifo = bool(props.get("FifoQueue") or props.get("FifoTopic"))
    if fifo:
        return run.stack.physical_name(resource.logical_id, limit - 5) + ".fifo"
    return run.stack.physical_name(resource.logical_id, limit)


def _sqs_queue(run: _Run, resource: Resource) -> None:
    props = run.props(resource)
    sqs = run.clients("sqs")
    name = _fifo_name(run, resource, props, "QueueName", 80)
    attributes = {key: _attribute_text(props[key]) for key in _QUEUE_ATTRIBUTES if key in props}
    tags = {tag["Key"]: tag["Value"] for tag in props.get("Tags") or []}
    try:
        url = sqs.create_queue(QueueName=name, Attributes=attributes, tags=tags)["QueueUrl"]
    except ClientError as exc:
        if _error_code(exc) not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
        # The template changed since the queue was made: bring its attributes up to date.
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attributes.pop("FifoQueue", None)
        if attributes:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    arn = run.stack.arn("sqs", name)
    run.record(resource.logical_id, resource.type, url, url, Arn=arn, QueueName=name, QueueUrl=url)


_TOPIC_ATTRIBUTES = (
    "ArchivePolicy",
    "ContentBasedDeduplication",
    "DisplayName",
    "FifoTopic",
    "KmsMasterKeyId",
    "SignatureVersion",
    "TracingConfig",
)
_SUBSCRIPTION_ATTRIBUTES = (
    "DeliveryPolicy",
    "FilterPolicy",
    "FilterPolicyScope",
    "RawMessageDelivery",
    "RedrivePolicy",
)


def _sns_topic(run: _Run, resource: Resource) -> None:
    props = run.props(resource)
    name = _fifo_name(run, resource, props, "TopicName", 256)
    attributes = {key: _attribute_text(props[key]) for key in _TOPIC_ATTRIBUTES if key in props}
    arn = run.clients("sns").create_topic(
        Name=name, Attributes=attributes, Tags=props.get("Tags") or []
    )["TopicArn"]
    for subscription in props.get("Subscription") or []:
        _subscribe(run, arn, subscription["Protocol"], subscription["Endpoint"], {})
    run.record(resource.logical_id, resource.type, arn, arn, TopicArn=arn, TopicName=name)


def _sns_subscription(run: _Run, resource: Resource) -> None:
    props = run.props(resource)
    attributes = {
        key: _attribute_text(props[key]) for key in _SUBSCRIPTION_ATTRIBUTES if key in props
    }
    arn = _subscribe(run, props["TopicArn"], props["Protocol"], props["Endpoint"], attributes)
    if arn is not None:
        run.record(resource.logical_id, resource.type, arn, arn)
    else:
        run.stack.stand_in(resource.logical_id, resource.type)


def _subscribe(
    run: _Run, topic_arn: str, protocol: str, endpoint: str, attributes: dict[str, str]
) -> str | None:
    """Subscribe (SNS returns the existing subscription on a second run); None when the
    endpoint is an invocation target that is not attached."""
    if protocol == "lambda" and not run.delivers(endpoint):
        return None
    answer = run.clients("sns").subscribe(
        TopicArn=topic_arn,
        Protocol=protocol,
        Endpoint=endpoint,
        Attributes=attributes,
        ReturnSubscriptionArn=True,
    )
    return str(answer["SubscriptionArn"])


# -- EventBridge


def _event_bus(run: _Run, resource: Resource) -> None:
    props = run.props(resource)
    events = run.clients("events")
    name = props["Name"]
    if name == "default":
        arn = events.describe_event_bus(Name=name)["Arn"]
    else:
        request: dict[str, Any] = {"Name": name}
        if props.get("Description"):
            request["Description"] = props["Description"]
        if props.get("Tags"):
            request["Tags"] = props["Tags"]
        try:
            arn = events.create_event_bus(**request)["EventBusArn"]
        except ClientError as exc:
            if _error_code(exc) != "ResourceAlreadyExistsException":
                raise
            arn = events.describe_event_bus(Name=name)["Arn"]
    run.record(resource.logical_id, resource.type, name, name, Arn=arn, Name=name)


def _event_archive(run: _Run, resource: Resource) -> None:
    props = run.props(resource)
    events = run.clients("events")
    name = props.get("ArchiveName") or run.stack.physical_name(resource.logical_id, 48)
    request: dict[str, Any] = {"ArchiveName": name, "EventSourceArn": props["SourceArn"]}
    if props.get("Description"):
        request["Description"] = props["Description"]
    if props.get("EventPattern"):
        request["EventPattern"] = _json_text(props["EventPattern"])
    if "RetentionDays" in props:
        request["RetentionDays"] = int(props["RetentionDays"])
    try:
        arn = events.create_archive(**request)["ArchiveArn"]
    except ClientError as exc:
        if _error_code(exc) != "ResourceAlreadyExistsException":
            raise
        arn = events.describe_archive(ArchiveName=name)["ArchiveArn"]
    run.record(resource.logical_id, resource.type, name, name, Arn=arn, ArchiveName=name)


def _events_rule(run: _Run, resource: Resource) -> None:
    props = run.props(resource)
    name = props.get("Name") or run.stack.physical_name(resource.logical_id, 64)
    _put_rule(
        run,
        resource.logical_id,
        name=name,
        bus=props.get("EventBusName") or "default",
        rule={
            key: props[key]
            for key in ("EventPattern", "ScheduleExpression", "State", "Description", "RoleArn")
            if key in props
        },
        targets=props.get("Targets") or [],
    )


def _put_rule(
    run: _Run,
    lid: str,
    *,
    name: str,
    bus: str,
    rule: dict[str, Any],
    targets: list[dict[str, Any]],
) -> None:
    """Create or update a rule and its targets (PutRule and PutTargets are upserts)."""
    events = run.clients("events")
    request = {"Name": name, "EventBusName": bus, "State": "ENABLED", **rule}
    if "EventPattern" in request:
        request["EventPattern"] = _json_text(request["EventPattern"])
    arn = events.put_rule(**request)["RuleArn"]
    attached = [target for target in targets if run.delivers(target["Arn"])]
    if attached:
        events.put_targets(Rule=name, EventBusName=bus, Targets=attached)
    bus_name = bus.rsplit("/", 1)[-1]
    # CloudFormation's Ref of a rule on a custom bus is "bus|rule".
    ref = name if bus_name == "default" else f"{bus_name}|{name}"
    run.record(lid, "AWS::Events::Rule", name, ref, Arn=arn)


# -- SSM and Secrets Manager


def _ssm_parameter(run: _Run, resource: Resource) -> None:
    props = run.props(resource)
    ssm = run.clients("ssm")
    name = props.get("Name") or run.stack.physical_name(resource.logical_id, 2048)
    value = props["Value"]
    request: dict[str, Any] = {
        "Name": name,
        "Value": ",".join(map(_text, value)) if isinstance(value, list) else _text(value),
        "Type": props.get("Type", "String"),
    }
    for key in ("Description", "Tier", "AllowedPattern", "DataType"):
        if props.get(key):
            request[key] = props[key]
    if props.get("Tags"):
        request["Tags"] = [{"Key": k, "Value": _text(v)} for k, v in props["Tags"].items()]
    # On a second run the parameter keeps its value: someone may have edited it since.
    _ignoring("ParameterAlreadyExists", ssm.put_parameter, **request)
    run.record(
        resource.logical_id, resource.type, name, name, Type=request["Type"], Value=request["Value"]
    )


_PASSWORD_OPTIONS = (
    "ExcludeCharacters",
    "ExcludeLowercase",
    "ExcludeNumbers",
    "ExcludePunctuation",
    "ExcludeUppercase",
    "IncludeSpace",
    "PasswordLength",
    "RequireEachIncludedType",
)


def _secret(run: _Run, resource: Resource) -> None:
    props = run.props(resource)
    secrets = run.clients("secretsmanager")
    name = props.get("Name") or run.stack.physical_name(resource.logical_id, 512)
    request: dict[str, Any] = {"Name": name}
    for key in ("Description", "KmsKeyId", "Tags"):
        if props.get(key):
            request[key] = props[key]
    try:
        arn = secrets.describe_secret(SecretId=name)["ARN"]  # a second run keeps the value
    except ClientError as exc:
        if _error_code(exc) != "ResourceNotFoundException":
            raise
        if "SecretString" in props:
            request["SecretString"] = _text(props["SecretString"])
        else:
            request["SecretString"] = _generated_secret(
                run, resource, props.get("GenerateSecretString") or {}
            )
        arn = secrets.create_secret(**request)["ARN"]
    run.record(resource.logical_id, resource.type, arn, arn, Id=arn)


def _generated_secret(run: _Run, resource: Resource, options: dict[str, Any]) -> str:
    """A value as CloudFormation generates it: GetRandomPassword with the template's options,
    put under ``GenerateStringKey`` of ``SecretStringTemplate`` when those are given."""
    request = {key: options[key] for key in _PASSWORD_OPTIONS if key in options}
    if "PasswordLength" in request:
        request["PasswordLength"] = int(request["PasswordLength"])
    password = run.clients("secretsmanager").get_random_password(**request)["RandomPassword"]
    template, key = options.get("SecretStringTemplate"), options.get("GenerateStringKey")
    if template is None and key is None:
        return str(password)
    if template is None or key is None:
        raise ConfigError(
            [
                f"Resources.{resource.logical_id}.GenerateSecretString: SecretStringTemplate "
                "and GenerateStringKey go together"
            ],
            str(run.stack.template.path),
        )
    document = json.loads(template)
    document[key] = password
    return json.dumps(document)


# -- Step Functions


def _state_machine(run: _Run, resource: Resource) -> None:
    props = run.props(resource)
    sfn = run.clients("stepfunctions")
    lid = resource.logical_id
    serverless = resource.type == "AWS::Serverless::StateMachine"
    name = props.get("Name" if serverless else "StateMachineName") or run.stack.physical_name(
        lid, 80
    )
    definition = _definition(run, resource, props)
    if definition is None:
        run.stack.stand_in(lid, resource.type)
        run.warn(resource, "its definition is in S3; not created (use a local DefinitionUri)")
        return
    role = props.get("Role" if serverless else "RoleArn") or run.stack.arn(
        "iam", f"role/{run.stack.physical_name(lid + 'Role', 64)}", region=False
    )
    arn = run.stack.arn("states", f"stateMachine:{name}")
    kind = props.get("Type" if serverless else "StateMachineType", "STANDARD")
    try:
        sfn.describe_state_machine(stateMachineArn=arn)
    except ClientError as exc:
        if _error_code(exc) != "StateMachineDoesNotExist":
            raise
        tags = props.get("Tags") or {}
        tag_list = (
            [{"key": k, "value": _text(v)} for k, v in tags.items()]
            if isinstance(tags, dict)
            else [{"key": t["Key"], "value": t["Value"]} for t in tags]
        )
        sfn.create_state_machine(
            name=name, definition=definition, roleArn=role, type=kind, tags=tag_list
        )
    else:  # a second run: the definition file may have changed since
        sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role)
    run.record(lid, resource.type, arn, arn, Arn=arn, Name=name)
    if serverless:
        for event_name, event in (props.get("Events") or {}).items():
            _wire_event(run, _Trigger(resource, event_name, event, arn, "StepFunctionsTarget"))


def _definition(run: _Run, resource: Resource, props: dict[str, Any]) -> str | None:
    """The state machine's definition as JSON, DefinitionSubstitutions applied: in the text of
    a DefinitionString or DefinitionUri file (as CloudFormation does, so ``"Seconds":
    ${Wait}`` works), in the strings of an inline Definition."""
    substitutions = {
        f"${{{key}}}": _text(value)
        for key, value in (props.get("DefinitionSubstitutions") or {}).items()
    }
    if "Definition" in props:
        return json.dumps(_substitute(props["Definition"], substitutions))
    where = f"Resources.{resource.logical_id}"
    if isinstance(props.get("DefinitionString"), str):
        text, where = props["DefinitionString"], f"{where}.DefinitionString"
    elif isinstance(props.get("DefinitionUri"), str):
        path = run.stack.template.root / props["DefinitionUri"]
        where = f"{where}.DefinitionUri ({path})"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            problem = f"{where}: cannot read it: {exc.strerror or exc}"
            raise ConfigError([problem], str(run.stack.template.path)) from exc
    else:
        return None
    text = _substitute(text, substitutions)
    try:  # a definition file may be YAML; JSON is YAML too, mostly, so try JSON first
        definition = json.loads(text)
    except ValueError:
        try:
            definition = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = f"{where}: neither JSON nor YAML: {exc}"
            raise ConfigError([problem], str(run.stack.template.path)) from exc
    return json.dumps(definition)


def _substitute(value: Any, substitutions: dict[str, str]) -> Any:
    if isinstance(value, str):
        for placeholder, replacement in substitutions.items():
            value = value.replace(placeholder, replacement)
        return value
    if isinstance(value, list):
        return [_substitute(item, substitutions) for item in value]
    if isinstance(value, dict):
        return {
            _substitute(key, substitutions): _substitute(item, substitutions)
            for key, item in value.items()
        }
    return value


# -- Lambda (functions, layers) and the triggers SAM creates for them


def _layer(run: _Run, resource: Resource) -> None:
    props = run.props(resource)
    name = props.get("LayerName") or run.stack.physical_name(resource.logical_id, 64)
    arn = run.stack.arn("lambda", f"layer:{name}:1")
    run.record(resource.logical_id, resource.type, arn, arn)
    content = props.get("ContentUri")
    if isinstance(content, str):
        run.stack._layer_dirs[arn] = run.stack.template.root / content


def _function(run: _Run, resource: Resource) -> None:
    props = run.props(resource)
    stack = run.stack
    lid = resource.logical_id
    code_uri = props.get("CodeUri")
    if not isinstance(code_uri, str):
        run.warn(resource, "no local CodeUri (inline, S3 or image code); it cannot run locally")
    function_name = props.get("FunctionName") or f"{stack.stack_name}-{lid}"
    arn = stack.arn("lambda", f"function:{function_name}")
    variables = (props.get("Environment") or {}).get("Variables") or {}
    function = LocalFunction(
        name=(Path(code_uri).name if isinstance(code_uri, str) else "") or lid,
        logical_id=lid,
        function_name=function_name,
        arn=arn,
        code_dir=stack.template.root / (code_uri if isinstance(code_uri, str) else ""),
        handler=str(props.get("Handler", "")),
        environment={key: _text(value) for key, value in variables.items()},
        timeout=int(props.get("Timeout", 3)),
        memory=int(props.get("MemorySize", 128)),
        events=props.get("Events") or {},
        layers=tuple(
            stack._layer_dirs[layer]
            for layer in props.get("Layers") or []
            if layer in stack._layer_dirs
        ),
        runtime=str(props.get("Runtime", "python3.11")),
    )
    key = function.name
    if key in stack.functions:
        run.warn(resource, f"shares the folder {key!r} with another function; named {lid!r}")
        key = lid
    stack.functions[key] = function
    run.record(lid, resource.type, function_name, function_name, Arn=arn)
    for event_name, event in function.events.items():
        _wire_event(run, _Trigger(resource, event_name, event, arn, "LambdaTarget"))


@dataclass(frozen=True)
class _Trigger:
    """One entry of a function's (or state machine's) Events, and what it invokes."""

    owner: Resource
    name: str
    event: dict[str, Any]
    target_arn: str
    target_suffix: str  # SAM's target id suffix: "LambdaTarget" or "StepFunctionsTarget"

    @property
    def logical_id(self) -> str:
        """The logical id SAM gives the resource it generates for the event."""
        return f"{self.owner.logical_id}{self.name}"

    @property
    def kind(self) -> str:
        return str(self.event.get("Type", ""))

    @property
    def properties(self) -> dict[str, Any]:
        return self.event.get("Properties") or {}


def _wire_event(run: _Run, trigger: _Trigger) -> None:
    """Create what SAM creates in AWS for one of a function's (or state machine's) Events."""
    wire = _EVENT_WIRING.get(trigger.kind)
    if wire is not None:
        wire(run, trigger)
    elif trigger.kind not in _EVENTS_WIRED_ELSEWHERE:
        run.warn(trigger.owner, f"event {trigger.name} ({trigger.kind}): not emulated locally")


def _rule_state(properties: dict[str, Any]) -> str:
    if "State" in properties:
        return str(properties["State"])
    return "DISABLED" if properties.get("Enabled") is False else "ENABLED"


def _rule_target(trigger: _Trigger) -> dict[str, Any]:
    properties = trigger.properties
    target_id = (properties.get("Target") or {}).get("Id")
    if not target_id:  # SAM's default id, truncated to the 64 characters allowed
        suffix = trigger.target_suffix
        target_id = trigger.logical_id[: 64 - len(suffix)] + suffix
    target: dict[str, Any] = {"Id": target_id, "Arn": trigger.target_arn}
    for key in ("Input", "InputPath", "InputTransformer", "RetryPolicy"):
        if key in properties:
            target[key] = properties[key]
    return target


def _rule_name(run: _Run, trigger: _Trigger) -> str:
    for key in ("RuleName", "Name"):
        if trigger.properties.get(key):
            return str(trigger.properties[key])
    name = f"{run.stack.stack_name}-{trigger.owner.logical_id}-{trigger.name}"
    if len(name) > 64:  # the longest rule name EventBridge takes
        name = run.stack.physical_name(f"{trigger.owner.logical_id}-{trigger.name}", 64)
    return name


def _schedule_event(run: _Run, trigger: _Trigger) -> None:
    properties = trigger.properties
    expression = properties.get("Schedule") or properties.get("ScheduleExpression")
    zone = properties.get("ScheduleExpressionTimezone")
    if zone and zone not in ("UTC", "Etc/UTC"):
        run.warn(
            trigger.owner, f"event {trigger.name}: its schedule runs in UTC locally, not {zone}"
        )
    rule: dict[str, Any] = {"ScheduleExpression": expression, "State": _rule_state(properties)}
    if properties.get("Description"):
        rule["Description"] = properties["Description"]
    _put_rule(
        run,
        trigger.logical_id,
        name=_rule_name(run, trigger),
        bus="default",
        rule=rule,
        targets=[_rule_target(trigger)],
    )


def _pattern_event(run: _Run, trigger: _Trigger) -> None:
    properties = trigger.properties
    _put_rule(
        run,
        trigger.logical_id,
        name=_rule_name(run, trigger),
        bus=properties.get("EventBusName") or "default",
        rule={"EventPattern": properties.get("Pattern") or {}, "State": _rule_state(properties)},
        targets=[_rule_target(trigger)],
    )


def _sns_event(run: _Run, trigger: _Trigger) -> None:
    properties = trigger.properties
    attributes: dict[str, str] = {
        key: _attribute_text(properties[key])
        for key in ("FilterPolicy", "FilterPolicyScope", "RedrivePolicy")
        if key in properties
    }
    arn = _subscribe(run, properties["Topic"], "lambda", trigger.target_arn, attributes)
    if arn is not None:
        run.record(trigger.logical_id, "AWS::SNS::Subscription", arn, arn)


_EVENT_WIRING: dict[str, Callable[[_Run, _Trigger], None]] = {
    "Schedule": _schedule_event,
    "ScheduleV2": _schedule_event,
    "CloudWatchEvent": _pattern_event,
    "EventBridgeRule": _pattern_event,
    "SNS": _sns_event,
}
# Triggers the local runtime serves itself, with nothing to create in the emulator.
_EVENTS_WIRED_ELSEWHERE = frozenset({"Api", "HttpApi", "SQS"})


# -- CloudWatch Logs


def _log_group(run: _Run, resource: Resource) -> None:
    props = run.props(resource)
    logs = run.clients("logs")
    name = props.get("LogGroupName") or run.stack.physical_name(resource.logical_id, 512)
    _ignoring("ResourceAlreadyExistsException", logs.create_log_group, logGroupName=name)
    if "RetentionInDays" in props:
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
    arn = run.stack.arn("logs", f"log-group:{name}:*")
    run.record(resource.logical_id, resource.type, name, name, Arn=arn)


def _recorded(run: _Run, resource: Resource) -> None:
    """Resources with nothing to create: the local runtime acts on them itself."""
    props = run.props(resource)
    ref = props.get("SecretId") or run.stack.physical_name(resource.logical_id)
    run.record(resource.logical_id, resource.type, ref, ref)


_PROVISIONERS: dict[str, Provisioner] = {
    "AWS::DynamoDB::Table": _dynamodb_table,
    "AWS::Serverless::SimpleTable": _simple_table,
    "AWS::SQS::Queue": _sqs_queue,
    "AWS::SNS::Topic": _sns_topic,
    "AWS::SNS::Subscription": _sns_subscription,
    "AWS::Events::EventBus": _event_bus,
    "AWS::Events::Archive": _event_archive,
    "AWS::Events::Rule": _events_rule,
    "AWS::SSM::Parameter": _ssm_parameter,
    "AWS::SecretsManager::Secret": _secret,
    "AWS::SecretsManager::RotationSchedule": _recorded,
    "AWS::StepFunctions::StateMachine": _state_machine,
    "AWS::Serverless::StateMachine": _state_machine,
    "AWS::Serverless::LayerVersion": _layer,
    "AWS::Lambda::LayerVersion": _layer,
    "AWS::Serverless::Function": _function,
    "AWS::Serverless::Api": _served_by_local_api,
    "AWS::Serverless::HttpApi": _served_by_local_api,
    "AWS::Logs::LogGroup": _log_group,
}
