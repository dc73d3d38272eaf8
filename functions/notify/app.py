"""The ``notify`` function: each domain event on the ``pitcrew`` bus, sent to the configured
notification channels (Slack, Discord, Teams, email) by ``pitcrew.notify``.

Lambda handler: ``app.handler``, behind an EventBridge rule. The configuration is loaded at
cold start. A channel that fails for good is written to the function's dead-letter queue, not
raised; only a failure to write there fails the invocation, so that the event is retried.
Each event id is handled once (``pitcrew.idempotency``).
"""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.idempotency import idempotent
from aws_lambda_powertools.utilities.typing import LambdaContext

from pitcrew.config import load_config
from pitcrew.idempotency import once_per, persistence_layer
from pitcrew.notify import dispatch
from pitcrew.observability import instrument

instruments = instrument("notify", traced=("botocore", "httpx"))
logger = instruments.logger
metrics = instruments.metrics
config = load_config()
# EventBridge delivers at least once: a repeated event id is answered from the record of the
# first delivery instead of messaging every channel again.
idempotency_store = persistence_layer()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@metrics.log_metrics
@idempotent(persistence_store=idempotency_store, config=once_per("id"))
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = dispatch(
        event, config, instruments=instruments, time_left_ms=context.get_remaining_time_in_millis()
    )
    return report.as_dict()
