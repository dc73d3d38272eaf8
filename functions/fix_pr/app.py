"""The ``fix_pr`` function: each ``IncidentDiagnosed`` event with a patch becomes a fix pull
request against the GitOps repository, or a comment on the workload's tracking issue in safe
mode (``pitcrew.fixes.flow``); each ``IncidentResolved`` event of an incident whose fix
merged, and each ``IncidentOpened`` event that reopens one, is noted on that pull request
(``pitcrew.fixes.loop``).

Lambda handler: ``app.handler``, behind an EventBridge rule on the ``pitcrew`` bus. Each event
id is handled once. A transient GitHub failure (after retries) fails the invocation, so
Lambda retries it and then keeps the event in the function's dead-letter queue; permanent
failures are recorded on the incident instead.
"""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.idempotency import idempotent
from aws_lambda_powertools.utilities.typing import LambdaContext

from pitcrew.config import load_config
from pitcrew.events import ReceivedEvent
from pitcrew.fixes.flow import FixFlow
from pitcrew.idempotency import once_per, persistence_layer
from pitcrew.observability import instrument

instruments = instrument("fix_pr", traced=("botocore",))
logger = instruments.logger
metrics = instruments.metrics
config = load_config()
flow = FixFlow(config, logger=logger, metrics=metrics)
idempotency_store = persistence_layer()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@metrics.log_metrics
@idempotent(persistence_store=idempotency_store, config=once_per("id"))
def handler(raw: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    event = ReceivedEvent.from_eventbridge(raw)
    if event.name in ("IncidentResolved", "IncidentOpened"):
        from pitcrew.fixes.loop import on_incident_reopened, on_incident_resolved

        if flow.config.github is None:
            return {"action": "skipped", "detail": "no github configuration"}
        if event.name == "IncidentResolved":
            noted = on_incident_resolved(event.detail, github=flow.github, store=flow.store)
            return {"action": "noted" if noted else "skipped", "detail": "incident resolved"}
        noted = on_incident_reopened(event.detail, github=flow.github, store=flow.store)
        return {"action": "noted" if noted else "skipped", "detail": "incident reopened"}
    return flow.handle(event.detail).as_dict()
