"""Reading template.yaml (short tags, Globals, parameters, dependency order) and resolving
intrinsic functions, with no AWS at all."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pitcrew.errors import ConfigError
from pitcrew.local.provision import Stack
from pitcrew.local.template import Template, default_template_path, load_template


def write(tmp_path: Path, text: str, name: str = "template.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def resolver(template: Template, **refs: str) -> Stack:
    return Stack(template=template, region="eu-west-1", account_id="111122223333", refs=refs)


SHORT_TAGS = """\
AWSTemplateFormatVersion: 2010-09-09
Parameters:
  Env: {Type: String, Default: dev}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [!Condition IsProd]
Mappings:
  Sizes: {dev: {memory: 256}}
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: !Sub "${AWS::StackName}-${Env}"
      DisplayName: !Sub ["${Name}-x", {Name: !GetAtt Queue.QueueName}]
      Tags:
        - {Key: arn, Value: !GetAtt [Queue, Arn]}
        - {Key: url, Value: !Ref Queue}
        - {Key: joined, Value: !Join [",", [a, b]]}
        - {Key: zone, Value: !Select [0, !GetAZs ""]}
        - {Key: part, Value: !Select [1, !Split ["/", "a/b/c"]]}
        - {Key: size, Value: !FindInMap [Sizes, !Ref Env, memory]}
        - {Key: maybe, Value: !If [IsProd, big, small]}
        - {Key: encoded, Value: !Base64 hello}
        - {Key: imported, Value: !ImportValue shared-vpc}
"""


def test_short_tags_become_their_long_form(tmp_path: Path) -> None:
    template = load_template(write(tmp_path, SHORT_TAGS))

    topic = template.resources["Topic"].properties
    assert topic["TopicName"] == {"Fn::Sub": "${AWS::StackName}-${Env}"}
    assert topic["DisplayName"] == {
        "Fn::Sub": ["${Name}-x", {"Name": {"Fn::GetAtt": ["Queue", "QueueName"]}}]
    }
    assert [tag["Value"] for tag in topic["Tags"]] == [
        {"Fn::GetAtt": ["Queue", "Arn"]},
        {"Ref": "Queue"},
        {"Fn::Join": [",", ["a", "b"]]},
        {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
        {"Fn::Select": [1, {"Fn::Split": ["/", "a/b/c"]}]},
        {"Fn::FindInMap": ["Sizes", {"Ref": "Env"}, "memory"]},
        {"Fn::If": ["IsProd", "big", "small"]},
        {"Fn::Base64": "hello"},
        {"Fn::ImportValue": "shared-vpc"},
    ]
    assert template.conditions == {
        "IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
        "NotProd": {"Fn::Not": [{"Condition": "IsProd"}]},
    }


def test_the_format_version_stays_a_string_not_a_date(tmp_path: Path) -> None:
    path = write(tmp_path, SHORT_TAGS)
    # Parameter defaults that look like dates are strings too.
    path.write_text(path.read_text().replace("Default: dev", "Default: 2024-01-31"))

    assert load_template(path).parameters == {"Env": "2024-01-31"}


GLOBALS = """\
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.11
    Timeout: 30
    MemorySize: 512
    Architectures: [x86_64]
    Layers: [!Ref SharedLayer]
    Environment:
      Variables:
        LOG_LEVEL: INFO
        TABLE: global-table
Resources:
  SharedLayer:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: shared/}
  ExtraLayer:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: extra/}
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/worker/
      Handler: app.handler
      Timeout: 15
      Architectures: [arm64]
      Layers: [!Ref ExtraLayer]
      Environment:
        Variables:
          TABLE: worker-table
          QUEUE: worker-queue
  Plain:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: functions/plain/, Handler: app.handler}
"""


def test_globals_merge_into_each_function_as_sam_does(tmp_path: Path) -> None:
    template = load_template(write(tmp_path, GLOBALS))

    worker = template.resources["Worker"].properties
    assert worker["Environment"]["Variables"] == {
        "LOG_LEVEL": "INFO",  # from Globals
        "TABLE": "worker-table",  # the function wins
        "QUEUE": "worker-queue",
    }
    assert worker["Timeout"] == 15
    assert worker["MemorySize"] == 512
    assert worker["Layers"] == [{"Ref": "SharedLayer"}, {"Ref": "ExtraLayer"}]  # appended
    assert worker["Architectures"] == ["arm64"]  # SAM replaces this list
    plain = template.resources["Plain"].properties
    assert plain["Timeout"] == 30
    assert plain["Environment"]["Variables"] == {"LOG_LEVEL": "INFO", "TABLE": "global-table"}


def test_resources_come_after_what_they_refer_to(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        Resources:
          Worker:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: functions/worker/
              Environment:
                Variables: {QUEUE: !Ref Queue, TOPIC: !Sub "${Topic}", DLQ: !GetAtt Dlq.Arn}
          Queue:
            Type: AWS::SQS::Queue
            Properties:
              RedrivePolicy: {deadLetterTargetArn: !GetAtt [Dlq, Arn], maxReceiveCount: 3}
          Topic:
            Type: AWS::SNS::Topic
            DependsOn: Audit
          Dlq:
            Type: AWS::SQS::Queue
          Audit:
            Type: AWS::SQS::Queue
        """,
    )
    template = load_template(path)

    order = list(template.resources)
    for lid, resource in template.resources.items():
        for dep in resource.depends_on:
            assert order.index(dep) < order.index(lid), f"{dep} must come before {lid}"
    assert set(template.resources["Worker"].depends_on) == {"Queue", "Topic", "Dlq"}
    assert template.resources["Topic"].depends_on == ("Audit",)
    assert list(template.of_type("AWS::SNS::Topic", "AWS::Serverless::Function")) == [
        "Topic",
        "Worker",
    ]


def test_a_dependency_cycle_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        Resources:
          A: {Type: AWS::SQS::Queue, Properties: {QueueName: !GetAtt B.QueueName}}
          B: {Type: AWS::SQS::Queue, DependsOn: A}
        """,
    )
    with pytest.raises(ConfigError, match="dependency cycle A -> B -> A"):
        load_template(path)


PARAMETERS = """\
Parameters:
  Stage: {Type: String, Default: v1, AllowedPattern: "^[a-z0-9]+$"}
  Level: {Type: String, Default: INFO, AllowedValues: [DEBUG, INFO]}
  Owner: {Type: String}
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties: {QueueName: !Sub "${Owner}-${Stage}"}
"""


def test_parameter_overrides_replace_defaults(tmp_path: Path) -> None:
    template = load_template(write(tmp_path, PARAMETERS), {"Owner": "team", "Level": "DEBUG"})

    assert template.parameters == {"Stage": "v1", "Level": "DEBUG", "Owner": "team"}


def test_an_unknown_override_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_template(write(tmp_path, PARAMETERS), {"Owner": "team", "Stahe": "v2"})

    assert "Stahe" in str(caught.value)
    assert "Stage, Level, Owner" in str(caught.value)


def test_a_parameter_without_default_or_override_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Parameters\.Owner: no Default and no override"):
        load_template(write(tmp_path, PARAMETERS))


def test_override_values_are_checked_like_cloudformation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_template(write(tmp_path, PARAMETERS), {"Owner": "x", "Level": "TRACE", "Stage": "V 2"})

    assert len(caught.value.problems) == 2
    assert "Parameters.Level: 'TRACE' is not one of ['DEBUG', 'INFO']" in caught.value.problems


def test_an_unknown_ref_is_named_with_where_it_is(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        Resources:
          Queue:
            Type: AWS::SQS::Queue
            Properties: {QueueName: !Sub "${Missing}-q", Tags: [{Key: k, Value: !Ref Gone}]}
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_template(path)

    assert caught.value.problems == [
        "Resources.Queue: Ref names no parameter or resource 'Missing'",
        "Resources.Queue: Ref names no parameter or resource 'Gone'",
    ]


def test_refs_to_what_sam_generates_are_allowed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        Transform: AWS::Serverless-2016-10-31
        Resources:
          Worker:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: functions/worker/, Handler: app.handler}
          Queue:
            Type: AWS::SQS::Queue
            Properties:
              Tags:
                - {Key: role, Value: !GetAtt WorkerRole.Arn}
                - {Key: version, Value: !Ref Worker.Version}
        """,
    )
    assert load_template(path).resources["Queue"].depends_on == ("Worker",)


def test_bad_yaml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "Resources:\n  Api:\n    Description: an API (Chalice): webhooks\n")

    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        load_template(path)
    assert caught.value.source == str(path)


def test_the_default_path_honours_pitcrew_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "Resources: {Q: {Type: AWS::SQS::Queue}}\n", name="other.yaml")
    monkeypatch.setenv("PITCREW_TEMPLATE", str(path))

    assert default_template_path() == path
    assert load_template().root == tmp_path.resolve()


def test_the_default_path_walks_up_to_the_repository_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PITCREW_TEMPLATE", raising=False)
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo / "tests" / "unit")

    assert default_template_path() == repo / "template.yaml"


# -- Stack.resolve


def test_resolve_ref_getatt_and_pseudo_parameters(tmp_path: Path) -> None:
    template = load_template(write(tmp_path, SHORT_TAGS))
    stack = resolver(template, Queue="https://sqs.local/q")
    stack.attrs["Queue", "Arn"] = "arn:aws:sqs:eu-west-1:111122223333:q"

    assert stack.resolve({"Ref": "Queue"}) == "https://sqs.local/q"
    assert stack.resolve({"Ref": "Env"}) == "dev"
    assert stack.resolve({"Fn::GetAtt": ["Queue", "Arn"]}).endswith(":q")
    assert stack.resolve({"Fn::GetAtt": "Queue.Arn"}).endswith(":q")
    assert stack.resolve([{"Ref": "AWS::Region"}, {"Ref": "AWS::AccountId"}]) == [
        "eu-west-1",
        "111122223333",
    ]
    assert stack.resolve({"Ref": "AWS::StackName"}) == "pitcrew"
    assert stack.resolve({"Ref": "AWS::Partition"}) == "aws"


def test_resolve_sub_in_both_forms(tmp_path: Path) -> None:
    template = load_template(write(tmp_path, SHORT_TAGS))
    stack = resolver(template, Queue="https://sqs.local/q")
    stack.attrs["Queue", "Arn"] = "arn:aws:sqs:eu-west-1:111122223333:q"

    assert (
        stack.resolve({"Fn::Sub": "arn:${AWS::Partition}:x:${AWS::Region}:${Queue.Arn}|${Env}"})
        == "arn:aws:x:eu-west-1:arn:aws:sqs:eu-west-1:111122223333:q|dev"
    )
    assert (
        stack.resolve({"Fn::Sub": ["${Prefix}/${AWS::Region}/${!Literal}", {"Prefix": "p"}]})
        == "p/eu-west-1/${Literal}"
    )
    assert stack.resolve({"Fn::Sub": ["${Url}", {"Url": {"Ref": "Queue"}}]}) == (
        "https://sqs.local/q"
    )


def test_resolve_join_select_split_and_friends(tmp_path: Path) -> None:
    template = load_template(write(tmp_path, SHORT_TAGS))
    stack = resolver(template, Queue="q")
    stack.attrs["Queue", "Arn"] = "arn:q"
    stack.attrs["Queue", "QueueName"] = "q"

    tags = {tag["Key"]: tag["Value"] for tag in template.resources["Topic"].properties["Tags"]}
    tags.pop("imported")  # no other stack exists locally
    assert stack.resolve(tags) == {
        "arn": "arn:q",
        "url": "q",
        "joined": "a,b",
        "zone": "eu-west-1a",
        "part": "b",
        "size": 256,
        "maybe": "small",
        "encoded": "aGVsbG8=",
    }
    assert stack.resolve({"Fn::Join": ["-", [{"Ref": "Env"}, 3, True]]}) == "dev-3-true"
    assert stack.condition("NotProd") is True


def test_resolve_drops_no_value(tmp_path: Path) -> None:
    template = load_template(write(tmp_path, SHORT_TAGS))
    stack = resolver(template)

    value = {
        "Keep": 1,
        "Drop": {"Fn::If": ["IsProd", "x", {"Ref": "AWS::NoValue"}]},
        "List": [1, {"Ref": "AWS::NoValue"}, 2],
    }
    assert stack.resolve(value) == {"Keep": 1, "List": [1, 2]}


def test_resolve_names_what_it_cannot_resolve(tmp_path: Path) -> None:
    template = load_template(write(tmp_path, SHORT_TAGS))
    stack = resolver(template, Queue="q")
    stack.attrs["Queue", "Arn"] = "arn:q"

    with pytest.raises(ConfigError, match=r"Queue\.Nope.*it has Arn"):
        stack.resolve({"Fn::GetAtt": ["Queue", "Nope"]})
    with pytest.raises(ConfigError, match="shared-vpc"):
        stack.resolve({"Fn::ImportValue": "shared-vpc"})


def test_physical_names_are_stable_and_fit(tmp_path: Path) -> None:
    template = load_template(write(tmp_path, SHORT_TAGS))
    one, again = resolver(template), resolver(template)

    name = one.physical_name("IncidentQueue", 80)
    assert name == again.physical_name("IncidentQueue", 80)
    assert name.startswith("pitcrew-IncidentQueue-")
    assert name != one.physical_name("GithubQueue", 80)
    assert len(one.physical_name("A" * 200, 64)) == 64
