"""template.yaml provisioned in the emulator (moto): every resource the template declares is
there, shaped as the template says, read back through boto3."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from pitcrew.errors import ConfigError
from pitcrew.local.provision import Stack, provision
from pitcrew.local.template import Template, default_template_path, load_template

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "templates" / "provision"


def boto(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1")


def test_every_table_has_its_key_schema_and_ttl(stack: Stack, template: Template) -> None:
    ddb = boto("dynamodb")
    tables = template.of_type("AWS::DynamoDB::Table")
    assert tables, "template.yaml declares tables"
    for lid, table in tables.items():
        name = stack.refs[lid]
        described = ddb.describe_table(TableName=name)["Table"]
        assert described["KeySchema"] == table.properties["KeySchema"], lid
        assert stack.attrs[lid, "Arn"] == described["TableArn"]
        ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        wanted = table.properties.get("TimeToLiveSpecification")
        if wanted and wanted["Enabled"]:
            assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": wanted["AttributeName"]}
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED", lid


def test_queues_redrive_to_their_dead_letter_queue(stack: Stack, template: Template) -> None:
    sqs = boto("sqs")
    with_dlq = {
        lid: res
        for lid, res in template.of_type("AWS::SQS::Queue").items()
        if "RedrivePolicy" in res.properties
    }
    assert {"IncidentQueue", "GithubDeliveryQueue"} <= set(with_dlq)
    for lid, queue in with_dlq.items():
        attributes = sqs.get_queue_attributes(QueueUrl=stack.refs[lid], AttributeNames=["All"])[
            "Attributes"
        ]
        policy = json.loads(attributes["RedrivePolicy"])
        dlq = queue.properties["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=stack.refs[dlq], AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        assert policy["deadLetterTargetArn"] == dlq_arn
        assert (
            int(policy["maxReceiveCount"]) == queue.properties["RedrivePolicy"]["maxReceiveCount"]
        )
        assert attributes["VisibilityTimeout"] == str(queue.properties["VisibilityTimeout"])


def test_the_pitcrew_bus_and_its_archive(stack: Stack) -> None:
    events = boto("events")
    bus = events.describe_event_bus(Name="pitcrew")

    assert stack.refs["PitcrewBus"] == "pitcrew"
    assert stack.attrs["PitcrewBus", "Arn"] == bus["Arn"]
    archive = events.describe_archive(ArchiveName=stack.refs["PitcrewBusArchive"])
    assert archive["EventSourceArn"] == bus["Arn"]
    assert archive["RetentionDays"] == 30


def test_secrets_get_generated_values_as_the_template_asks(stack: Stack) -> None:
    secrets = boto("secretsmanager")
    for lid in ("ApiTokenSecret", "AlertmanagerTokenSecret"):
        value = secrets.get_secret_value(SecretId=stack.refs[lid])["SecretString"]
        assert len(value) == 40
        assert set(value) <= set(string.ascii_letters + string.digits), "no punctuation"
    assert stack.refs["ApiTokenSecret"].startswith(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:pitcrew/api-token-"
    )


def test_the_config_parameter_holds_the_template_value(stack: Stack, template: Template) -> None:
    parameter = boto("ssm").get_parameter(Name="/pitcrew/config")["Parameter"]

    assert stack.refs["ConfigParameter"] == "/pitcrew/config"
    assert parameter["Value"] == template.resources["ConfigParameter"].properties["Value"]
    assert "api" in yaml.safe_load(parameter["Value"])


def test_functions_are_recorded_with_their_resolved_environment(stack: Stack) -> None:
    api = stack.functions["api"]

    assert api.function_name == "pitcrew-api"
    assert api.arn == "arn:aws:lambda:us-east-1:123456789012:function:pitcrew-api"
    assert api.handler == "app.app"
    assert api.code_dir.name == "api" and api.code_dir.parent.name == "functions"
    assert api.timeout == 15 and api.memory == 512
    assert api.environment["EVENT_BUS_NAME"] == "pitcrew"
    assert api.environment["INCIDENTS_TABLE"] == stack.refs["IncidentsTable"]
    assert api.environment["INCIDENT_QUEUE_URL"] == stack.refs["IncidentQueue"]
    assert api.environment["PITCREW_CONFIG"] == "ssm:/pitcrew/config"
    assert [layer.name for layer in api.layers] == ["shared", "deps"]
    assert not boto("lambda").list_functions()["Functions"], "functions run in-process"


def test_the_stack_fixture_exposes_the_resources_to_code_under_test(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    table = os.environ["INCIDENTS_TABLE"]
    boto("dynamodb").put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"S": "b"}})
    assert os.environ["EVENT_BUS_NAME"] == "pitcrew"
    assert os.environ["PITCREW_CONFIG"].endswith("infra/local/pitcrew.yaml")


def test_what_the_emulator_cannot_do_is_said(stack: Stack) -> None:
    assert stack.warnings == [
        "AWS::Serverless::Api PitcrewApi: "
        "served by pitcrew's local API (--port), not by the emulator"
    ]


def test_provisioning_twice_reuses_what_exists(aws: None, template: Template) -> None:
    first = provision(template)  # through pitcrew.aws, as the local runtime does
    secret = boto("secretsmanager").get_secret_value(SecretId="pitcrew/api-token")
    second = provision(template)

    assert second.refs == first.refs
    assert second.attrs == first.attrs
    assert len(boto("dynamodb").list_tables()["TableNames"]) == len(
        template.of_type("AWS::DynamoDB::Table")
    )
    assert len(boto("sqs").list_queues()["QueueUrls"]) == len(template.of_type("AWS::SQS::Queue"))
    again = boto("secretsmanager").get_secret_value(SecretId="pitcrew/api-token")
    assert again["SecretString"] == secret["SecretString"], "a second run keeps secret values"


def test_a_resource_added_to_the_template_appears_with_no_other_change(
    aws: None, template: Template, tmp_path: Path
) -> None:
    before = provision(template, client_factory=boto)
    added = """
  AuditQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 42
  AuditTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
      KeySchema: [{AttributeName: id, KeyType: HASH}]
"""
    original = default_template_path().read_text(encoding="utf-8")
    assert "\nResources:\n" in original
    copy = tmp_path / "template.yaml"
    copy.write_text(original.replace("\nResources:\n", "\nResources:\n" + added, 1))
    # The copy's relative paths (state machine definitions, code) resolve as the original's.
    for folder in ("infra", "functions", "layers", "shared"):
        (tmp_path / folder).symlink_to(default_template_path().parent / folder)

    stack = provision(load_template(copy), client_factory=boto)

    queue = boto("sqs").get_queue_attributes(
        QueueUrl=stack.refs["AuditQueue"], AttributeNames=["VisibilityTimeout"]
    )
    assert queue["Attributes"]["VisibilityTimeout"] == "42"
    table = boto("dynamodb").describe_table(TableName=stack.refs["AuditTable"])["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert stack.refs["AuditTable"].startswith("pitcrew-AuditTable-")
    assert stack.refs == before.refs | {
        "AuditQueue": stack.refs["AuditQueue"],
        "AuditTable": stack.refs["AuditTable"],
    }


# -- what template.yaml does not use yet: tests/fixtures/templates/provision/template.yaml


@pytest.fixture
def features(aws: None) -> Stack:
    return provision(load_template(FIXTURE / "template.yaml"), client_factory=boto)


def test_state_machines_get_their_definition_substitutions(features: Stack) -> None:
    sfn = boto("stepfunctions")
    promotion = sfn.describe_state_machine(stateMachineArn=features.refs["PromotionMachine"])
    definition = json.loads(promotion["definition"])
    steps_arn = features.functions["steps"].arn

    assert definition["States"]["Run"]["Parameters"]["FunctionName"] == steps_arn
    assert definition["States"]["Wait"]["Comment"] == "5 seconds"
    assert "${" not in promotion["definition"]
    inline = sfn.describe_state_machine(stateMachineArn=features.refs["InlineMachine"])
    queue_url = json.loads(inline["definition"])["States"]["Send"]["Parameters"]["QueueUrl"]
    assert queue_url == features.refs["Inbox"]


def test_schedule_events_become_rules_targeting_the_function(features: Stack) -> None:
    events = boto("events")
    cost = features.functions["cost"]

    daily = events.describe_rule(Name="pitcrew-CostFunction-Daily")
    assert daily["ScheduleExpression"] == "rate(1 day)"
    assert daily["State"] == "ENABLED"
    paused = events.describe_rule(Name="pitcrew-CostFunction-Paused")
    assert paused["ScheduleExpression"] == "cron(0 12 * * ? *)"
    assert paused["State"] == "DISABLED"
    targets = events.list_targets_by_rule(Rule="pitcrew-CostFunction-Daily")["Targets"]
    assert targets == [{"Id": "CostFunctionDailyLambdaTarget", "Arn": cost.arn}]
    assert features.refs["CostFunctionDaily"] == "pitcrew-CostFunction-Daily"


def test_eventbridge_rule_events_match_on_the_named_bus(features: Stack) -> None:
    rule = boto("events").describe_rule(
        Name="pitcrew-CostFunction-Diagnosed", EventBusName="features"
    )

    assert json.loads(rule["EventPattern"]) == {
        "source": ["pitcrew"],
        "detail-type": ["IncidentDiagnosed"],
    }
    assert features.refs["CostFunctionDiagnosed"] == "features|pitcrew-CostFunction-Diagnosed"


def test_without_invocation_targets_events_can_still_be_put(aws: None) -> None:
    stack = provision(
        load_template(FIXTURE / "template.yaml"), client_factory=boto, invocation_targets=False
    )
    events = boto("events")

    assert events.list_targets_by_rule(Rule="pitcrew-CostFunction-Daily")["Targets"] == []
    answer = events.put_events(
        Entries=[
            {
                "Source": "pitcrew",
                "DetailType": "IncidentDiagnosed",
                "Detail": "{}",
                "EventBusName": stack.refs["Bus"],
            }
        ]
    )
    assert answer["FailedEntryCount"] == 0


def test_other_resource_shapes(features: Stack) -> None:
    assert features.refs["Jobs"].endswith(".fifo")
    table = boto("dynamodb").describe_table(TableName=features.refs["Records"])["Table"]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["by-status"]
    assert table["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert features.attrs["Records", "StreamArn"] == table["LatestStreamArn"]
    secret = boto("secretsmanager").get_secret_value(SecretId="features/webhook")
    value = json.loads(secret["SecretString"])
    assert value["user"] == "pitcrew"
    assert len(value["password"]) == 24
    assert not set(value["password"]) & set('"@/\\')
    subscriptions = boto("sns").list_subscriptions_by_topic(TopicArn=features.refs["Notices"])
    assert [s["Endpoint"] for s in subscriptions["Subscriptions"]] == [
        features.attrs["Inbox", "Arn"]
    ]
    assert "ProdOnlyQueue" not in features.refs, "its condition is false"
    assert features.functions["cost"].environment == {
        "STAGE": "dev",
        "RECORDS_TABLE": features.refs["Records"],
    }


def test_an_unsupported_type_is_a_warning_not_a_crash(features: Stack) -> None:
    assert features.warnings == [
        "AWS::CloudWatch::Alarm ErrorsAlarm: not emulated locally; references to it get "
        "stand-in values"
    ]
    outputs = features.resolve(features.template.outputs)
    assert outputs["AlarmArn"]["Value"].startswith("arn:aws:cloudwatch:us-east-1:")
    assert outputs["RoleArn"]["Value"].startswith("arn:aws:iam::123456789012:role/")


def test_a_property_the_emulator_rejects_names_the_resource(aws: None, tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        "Resources:\n  Broken:\n    Type: AWS::DynamoDB::Table\n"
        "    Properties: {BillingMode: PAY_PER_REQUEST, KeySchema: [], AttributeDefinitions: []}\n"
    )
    with pytest.raises(ConfigError, match=r"Resources\.Broken \(AWS::DynamoDB::Table\)"):
        provision(load_template(path), client_factory=boto)
