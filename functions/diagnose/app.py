"""The ``diagnose`` function: alerts from the incident queue grouped into incidents, and each
new incident diagnosed (``pitcrew.incidents.triage``).

Lambda handler: ``app.handler``, behind the incident queue (SQS, partial batch failures). A
message that fails is retried and, after the queue's ``maxReceiveCount``, kept in its
dead-letter queue; a message that can never succeed (malformed) goes there at once, with the
reason. Each alert is processed once, whatever SQS and Alertmanager redeliver.
"""

from typing import Any

from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext

from pitcrew.batch import PartialBatchResponse, SqsMessage, process_sqs_batch
from pitcrew.config import load_config
from pitcrew.deadletter import DeadLetters
from pitcrew.errors import BadRequestError, NotFoundError
from pitcrew.idempotency import once_per, persistence_layer
from pitcrew.incidents.triage import Triage
from pitcrew.observability import instrument

instruments = instrument("diagnose", traced=("botocore", "httpx"))
logger = instruments.logger
metrics = instruments.metrics
config = load_config()
triage = Triage(config, logger=logger, metrics=metrics)
dead_letters = DeadLetters.from_env("INCIDENT_DLQ_URL")
# The same alert (fingerprint, startsAt, status) is handled once for a week: Alertmanager
# resends a group every group_interval and SQS delivers at least once.
alert_once = once_per("key", expires_after_seconds=7 * 24 * 3600)


@idempotent_function(
    data_keyword_argument="item", persistence_store=persistence_layer(), config=alert_once
)
def process_alert(item: dict[str, Any]) -> dict[str, Any]:
    return triage.handle_alert(item["alert"])


def process_message(record: SqsMessage) -> None:
    try:
        message = record.json_body()
        if not isinstance(message, dict):
            raise BadRequestError(f"expected a JSON object, got {type(message).__name__}")
        incident_id = triage.retry_of(message)
        alerts = [] if incident_id else triage.alerts_of(message)
    except (ValueError, BadRequestError) as exc:
        # Retrying cannot fix a malformed message: keep it, with the reason, and move on.
        dead_letters.keep(record.body, reason=f"malformed incident message: {exc}")
        metrics.add_metric(name="MalformedMessages", unit="Count", value=1)
        return
    if incident_id:
        try:
            triage.retry(incident_id)
        except NotFoundError as exc:
            # No retry can make the incident exist (it expired or the id is wrong).
            dead_letters.keep(record.body, reason=f"retry of an unknown incident: {exc}")
        return
    for alert in alerts:
        process_alert(item={"key": alert.key, "alert": alert})


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialBatchResponse:
    alert_once.register_lambda_context(context)
    return process_sqs_batch(event, process_message, logger=logger)
