"""The ``github_events`` function: GitHub deliveries from the GitHub delivery queue (queued by
``POST /webhooks/github``), handled by ``pitcrew.fixes.deliveries``: fix pull requests merged
or closed, ``/pitcrew`` commands, promotion triggers.

Lambda handler: ``app.handler``, an SQS batch with partial failures: a message that fails is
retried alone and, after the queue's ``maxReceiveCount``, kept in its dead-letter queue; a
message that can never succeed (not a delivery) goes there at once, with the reason.
"""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from pitcrew.batch import PartialBatchResponse, SqsMessage, process_sqs_batch
from pitcrew.config import load_config
from pitcrew.deadletter import DeadLetters
from pitcrew.errors import BadRequestError
from pitcrew.fixes.deliveries import GithubDeliveries, parse_message
from pitcrew.observability import instrument

instruments = instrument("github_events", traced=("botocore",))
logger = instruments.logger
metrics = instruments.metrics
config = load_config()
deliveries = GithubDeliveries(config, logger=logger)
dead_letters = DeadLetters.from_env("GITHUB_DLQ_URL")


def handle_record(record: SqsMessage) -> str:
    try:
        delivery, name, payload = parse_message(record.body)
    except BadRequestError as exc:
        # Retrying cannot fix a message that is not a delivery: keep it, with the reason.
        dead_letters.keep(record.body, reason=str(exc))
        metrics.add_metric(name="MalformedMessages", unit=MetricUnit.Count, value=1)
        return "kept in the dead-letter queue"
    outcome = deliveries.handle(delivery, name, payload)
    metrics.add_metric(name="GithubDeliveriesHandled", unit=MetricUnit.Count, value=1)
    return outcome


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialBatchResponse:
    return process_sqs_batch(event, handle_record, logger=logger)
