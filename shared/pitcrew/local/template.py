"""Read ``template.yaml`` the way CloudFormation and SAM do: short-form tags, parameters,
SAM ``Globals``, and the resources in an order in which each comes after what it refers to.

Nothing here talks to AWS: intrinsic functions stay unresolved (``Stack.resolve`` in
``pitcrew.local.provision`` resolves them once the resources exist).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pitcrew.errors import ConfigError

PSEUDO_PARAMETERS = frozenset(
    {
        "AWS::AccountId",
        "AWS::NotificationARNs",
        "AWS::NoValue",
        "AWS::Partition",
        "AWS::Region",
        "AWS::StackId",
        "AWS::StackName",
        "AWS::URLSuffix",
    }
)

# Short-form tag -> the long form's key.
_SHORT_TAGS = {
    "Ref": "Ref",
    "Condition": "Condition",
    **{
        name: f"Fn::{name}"
        for name in (
            "And",
            "Base64",
            "Cidr",
            "Equals",
            "FindInMap",
            "GetAZs",
            "GetAtt",
            "If",
            "ImportValue",
            "Join",
            "Length",
            "Not",
            "Or",
            "Select",
            "Split",
            "Sub",
            "ToJsonString",
            "Transform",
        )
    },
}

# SAM's Globals sections and the resource type each one applies to.
_GLOBALS_SECTIONS = {
    name: f"AWS::Serverless::{name}"
    for name in ("Function", "Api", "HttpApi", "SimpleTable", "StateMachine", "LayerVersion")
}
# Lists SAM replaces instead of concatenating (samtranslator ``CUSTOM_STRATEGIES``).
_REPLACED_LISTS = frozenset({"Function.Architectures"})

# `${Name}` and `${Resource.Attribute}` in Fn::Sub; `${!Literal}` is not a variable.
_SUB_VARIABLE = re.compile(r"\$\{([^!}][^}]*)\}")


class CfnLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation short-form tags (``!Sub x``) as their long form
    (``{"Fn::Sub": x}``), and leaves dates as strings as CloudFormation does."""


CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _intrinsic_constructor(long_name: str) -> Any:
    def construct(loader: CfnLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        elif isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
        else:
            raise yaml.constructor.ConstructorError(None, None, "unexpected node", node.start_mark)
        if long_name == "Fn::GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {long_name: value}

    return construct


for _tag, _long_name in _SHORT_TAGS.items():
    CfnLoader.add_constructor(f"!{_tag}", _intrinsic_constructor(_long_name))


@dataclass(frozen=True)
class Resource:
    """One resource of the template, its intrinsic functions unresolved.

    ``properties`` of a SAM resource have the template's ``Globals`` merged in. ``depends_on``
    lists every resource this one needs first: its ``DependsOn`` and the resources its
    ``Ref``, ``Fn::GetAtt`` and ``Fn::Sub`` name. ``condition`` is its ``Condition``, if any.
    """

    logical_id: str
    type: str
    properties: dict[str, Any]
    metadata: dict[str, Any]
    depends_on: tuple[str, ...]
    condition: str | None = None


@dataclass(frozen=True)
class Template:
    """A loaded template. ``resources`` are in dependency order: create them top to bottom."""

    path: Path
    root: Path
    parameters: dict[str, str]
    resources: dict[str, Resource]
    parameter_types: dict[str, str] = field(default_factory=dict)
    conditions: dict[str, Any] = field(default_factory=dict)
    mappings: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    # Logical ids SAM generates (a function's role, an event's rule) -> (owner, type).
    generated: dict[str, tuple[str, str]] = field(default_factory=dict)

    def of_type(self, *types: str) -> dict[str, Resource]:
        """The resources of any of ``types``, in dependency order."""
        return {lid: res for lid, res in self.resources.items() if res.type in types}


def default_template_path() -> Path:
    """``$PITCREW_TEMPLATE``, else the nearest ``template.yaml`` from the working directory
    up, else the repository's (next to ``shared/``)."""
    configured = os.environ.get("PITCREW_TEMPLATE")
    if configured:
        return Path(configured)
    cwd = Path.cwd()
    for directory in (cwd, *cwd.parents):
        candidate = directory / "template.yaml"
        if candidate.is_file():
            return candidate
    return Path(__file__).resolve().parents[3] / "template.yaml"


def load_template(
    path: str | Path | None = None, parameter_overrides: Mapping[str, str] | None = None
) -> Template:
    """Read and check a template; ``ConfigError`` names every problem found."""
    path = Path(path) if path is not None else default_template_path()
    source = str(path)
    document = _read(path)
    parameters, parameter_types = _parameters(
        document.get("Parameters") or {}, source, parameter_overrides or {}
    )
    raw_resources = document.get("Resources")
    if not isinstance(raw_resources, dict) or not raw_resources:
        raise ConfigError(["Resources: the template has no resources"], source)

    problems: list[str] = []
    globals_ = _globals(document.get("Globals") or {}, problems)
    generated = _sam_generated(raw_resources)
    conditions = document.get("Conditions") or {}
    known = _Names(set(raw_resources), set(parameters), set(conditions), generated)

    resources: dict[str, Resource] = {}
    for lid, raw in raw_resources.items():
        if not isinstance(raw, dict) or not isinstance(raw.get("Type"), str):
            problems.append(f"Resources.{lid}: needs a Type")
            continue
        properties = raw.get("Properties") or {}
        if raw["Type"] in globals_:
            properties = _merge(globals_[raw["Type"]], properties, raw["Type"].split("::")[-1])
        depends_on = raw.get("DependsOn") or []
        explicit = [depends_on] if isinstance(depends_on, str) else list(depends_on)
        for dep in explicit:
            if dep not in raw_resources:
                problems.append(f"Resources.{lid}.DependsOn: no resource named {dep!r}")
        implicit = known.check(properties, f"Resources.{lid}", problems)
        condition = raw.get("Condition")
        if condition is not None and condition not in conditions:
            problems.append(f"Resources.{lid}.Condition: no condition named {condition!r}")
        needs = [d for d in dict.fromkeys([*explicit, *implicit]) if d != lid]
        resources[lid] = Resource(
            logical_id=lid,
            type=raw["Type"],
            properties=properties,
            metadata=raw.get("Metadata") or {},
            depends_on=tuple(needs),
            condition=condition,
        )
    for name, value in conditions.items():
        known.check(value, f"Conditions.{name}", problems)
    outputs = document.get("Outputs") or {}
    for name, value in outputs.items():
        known.check(value, f"Outputs.{name}", problems)
    if problems:
        raise ConfigError(problems, source)

    order = _dependency_order({lid: res.depends_on for lid, res in resources.items()}, source)
    return Template(
        path=path,
        root=path.resolve().parent,
        parameters=parameters,
        resources={lid: resources[lid] for lid in order},
        parameter_types=parameter_types,
        conditions=conditions,
        mappings=document.get("Mappings") or {},
        outputs=outputs,
        generated=generated,
    )


def references(value: Any) -> Iterator[tuple[str, str]]:
    """Every name a structure refers to, as ``(kind, name)``: ``("Ref", "Queue")`` (also
    ``${Queue}`` in ``Fn::Sub``), ``("GetAtt", "Queue")`` and ``("Condition", "IsProd")``
    (the condition of an ``Fn::If``)."""
    if isinstance(value, list):
        for item in value:
            yield from references(item)
    elif isinstance(value, dict):
        key = next(iter(value)) if len(value) == 1 else None
        if key in _REFERENCES_OF:
            yield from _REFERENCES_OF[key](value[key])
        else:
            for item in value.values():
                yield from references(item)


def split_sub(arg: Any) -> tuple[str, dict[str, Any]]:
    """An ``Fn::Sub`` argument as (text, variables): ``"text"`` or ``["text", {vars}]``."""
    if isinstance(arg, str):
        return arg, {}
    if isinstance(arg, list) and arg and isinstance(arg[0], str):
        variables = arg[1] if len(arg) > 1 and isinstance(arg[1], dict) else {}
        return arg[0], variables
    raise ValueError(f"Fn::Sub takes a string or [string, {{variables}}], not {arg!r}")


def sub_variables(text: str) -> list[str]:
    """The variable names of an ``Fn::Sub`` string, ``${!Literal}`` escapes left out."""
    return [match.strip() for match in _SUB_VARIABLE.findall(text)]


def _ref_references(arg: Any) -> Iterator[tuple[str, str]]:
    if isinstance(arg, str):
        yield "Ref", arg


def _get_att_references(arg: Any) -> Iterator[tuple[str, str]]:
    parts = arg.split(".", 1) if isinstance(arg, str) else arg
    if isinstance(parts, list) and parts and isinstance(parts[0], str):
        yield "GetAtt", parts[0]
        yield from references(parts[1:])


def _sub_references(arg: Any) -> Iterator[tuple[str, str]]:
    try:
        text, variables = split_sub(arg)
    except ValueError:
        return
    for name in sub_variables(text):
        if name not in variables:
            yield ("GetAtt", name.split(".", 1)[0]) if "." in name else ("Ref", name)
    yield from references(variables)


def _if_references(arg: Any) -> Iterator[tuple[str, str]]:
    if isinstance(arg, list) and arg and isinstance(arg[0], str):
        yield "Condition", arg[0]
        yield from references(arg[1:])


_REFERENCES_OF = {
    "Ref": _ref_references,
    "Fn::GetAtt": _get_att_references,
    "Fn::Sub": _sub_references,
    "Fn::If": _if_references,
}


@dataclass
class _Names:
    """What a template's references may name; ``check`` returns the resources one needs."""

    resources: set[str]
    parameters: set[str]
    conditions: set[str]
    generated: dict[str, tuple[str, str]]

    def check(self, value: Any, where: str, problems: list[str]) -> list[str]:
        needs: list[str] = []
        for kind, name in references(value):
            if kind == "Condition":
                if name not in self.conditions:
                    problems.append(f"{where}: Fn::If names no condition {name!r}")
                continue
            if kind == "Ref" and (name in self.parameters or name in PSEUDO_PARAMETERS):
                continue
            # SAM lets `!Ref Function.Alias` / `!Ref Api.Stage` name a generated resource.
            owner = name.split(".", 1)[0] if kind == "Ref" else name
            if owner in self.resources:
                needs.append(owner)
            elif owner in self.generated:
                needs.append(self.generated[owner][0])
            else:
                problems.append(f"{where}: {kind} names no parameter or resource {name!r}")
        return needs


def _read(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read the template: {exc.strerror or exc}"], source) from exc
    try:
        document = yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source) from exc
    if not isinstance(document, dict):
        raise ConfigError(["the template is not a YAML mapping"], source)
    return document


def _parameter_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_parameter_text(item) for item in value)
    return str(value)


def _parameters(
    declared: dict[str, Any], source: str, overrides: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    problems = [
        f"parameter override {name!r}: the template declares no such parameter "
        f"(it has: {', '.join(declared) or 'none'})"
        for name in overrides
        if name not in declared
    ]
    values: dict[str, str] = {}
    types: dict[str, str] = {}
    for name, declaration in declared.items():
        spec = declaration or {}
        types[name] = str(spec.get("Type", "String"))
        if name in overrides:
            value = _parameter_text(overrides[name])
        elif "Default" in spec:
            value = _parameter_text(spec["Default"])
        else:
            problems.append(f"Parameters.{name}: no Default and no override given")
            continue
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [_parameter_text(a) for a in allowed]:
            problems.append(f"Parameters.{name}: {value!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(pattern, value):
            problems.append(f"Parameters.{name}: {value!r} does not match {pattern!r}")
        values[name] = value
    if problems:
        raise ConfigError(problems, source)
    return values, types


def _globals(section: dict[str, Any], problems: list[str]) -> dict[str, dict[str, Any]]:
    by_type: dict[str, dict[str, Any]] = {}
    for name, properties in section.items():
        if name not in _GLOBALS_SECTIONS:
            problems.append(
                f"Globals.{name}: not a SAM Globals section (one of {', '.join(_GLOBALS_SECTIONS)})"
            )
            continue
        by_type[_GLOBALS_SECTIONS[name]] = properties or {}
    return by_type


def _is_intrinsic(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    key = next(iter(value))
    return key in ("Ref", "Condition") or key.startswith("Fn::")


def _merge(global_value: Any, local_value: Any, path: str) -> Any:
    """SAM's Globals merge: maps merged key by key (the resource wins), lists concatenated
    (globals first), anything else, intrinsics included, taken from the resource."""
    if (
        isinstance(global_value, dict)
        and isinstance(local_value, dict)
        and not _is_intrinsic(global_value)
        and not _is_intrinsic(local_value)
    ):
        merged = dict(global_value)
        for key, value in local_value.items():
            child = f"{path}.{key}"
            merged[key] = _merge(merged[key], value, child) if key in merged else value
        return merged
    if (
        isinstance(global_value, list)
        and isinstance(local_value, list)
        and path not in _REPLACED_LISTS
    ):
        return global_value + local_value
    return local_value


def _sam_generated(resources: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The logical ids SAM adds for a template's serverless resources, which the template may
    refer to (``!GetAtt MyFunctionRole.Arn``)."""
    generated: dict[str, tuple[str, str]] = {}
    event_types = {
        "Schedule": "AWS::Events::Rule",
        "CloudWatchEvent": "AWS::Events::Rule",
        "EventBridgeRule": "AWS::Events::Rule",
        "ScheduleV2": "AWS::Scheduler::Schedule",
        "SQS": "AWS::Lambda::EventSourceMapping",
        "Kinesis": "AWS::Lambda::EventSourceMapping",
        "DynamoDB": "AWS::Lambda::EventSourceMapping",
        "SNS": "AWS::SNS::Subscription",
    }
    for lid, raw in resources.items():
        if not isinstance(raw, dict):
            continue
        kind = raw.get("Type")
        properties = raw.get("Properties") or {}
        if kind not in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            continue
        if "Role" not in properties:
            generated[f"{lid}Role"] = (lid, "AWS::IAM::Role")
        for event_name, event in (properties.get("Events") or {}).items():
            event_type = event.get("Type") if isinstance(event, dict) else None
            if event_type in event_types:
                generated[f"{lid}{event_name}"] = (lid, event_types[event_type])
            generated[f"{lid}{event_name}Permission"] = (lid, "AWS::Lambda::Permission")
            event_properties = (event.get("Properties") or {}) if isinstance(event, dict) else {}
            if event_type == "Api" and "RestApiId" not in event_properties:
                generated["ServerlessRestApi"] = (lid, "AWS::ApiGateway::RestApi")
            if event_type == "HttpApi" and "ApiId" not in event_properties:
                generated["ServerlessHttpApi"] = (lid, "AWS::ApiGatewayV2::Api")
    return {name: owner for name, owner in generated.items() if name not in resources}


def _dependency_order(needs: dict[str, tuple[str, ...]], source: str) -> list[str]:
    """Resources ordered so each comes after what it needs, otherwise in template order."""
    order: list[str] = []
    done: set[str] = set()
    path: list[str] = []

    def visit(lid: str) -> None:
        if lid in done:
            return
        if lid in path:
            cycle = [*path[path.index(lid) :], lid]
            raise ConfigError([f"Resources: dependency cycle {' -> '.join(cycle)}"], source)
        path.append(lid)
        for dep in needs[lid]:
            visit(dep)
        path.pop()
        done.add(lid)
        order.append(lid)

    for lid in needs:
        visit(lid)
    return order
