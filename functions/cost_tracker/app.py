"""The ``cost_tracker`` function: once a day, each configured cloud's new daily costs into
the costs table, spikes and budget thresholds as domain events (``pitcrew.costs.tracker``).

Lambda handler: ``app.handler``, behind an EventBridge schedule. The configuration is loaded
at cold start. A failed run raises, so that the schedule's retry runs it again: the history
it leaves is consistent and nothing already alerted is alerted twice. Each scheduled event
id runs once (``pitcrew.idempotency``): a second delivery of the same event, even while the
first still runs, does not run the day again (two runs at once would both send the alerts
neither had sent yet).
"""

from typing import Any

from aws_lambda_powertools.utilities.idempotency import idempotent
from aws_lambda_powertools.utilities.typing import LambdaContext

from pitcrew.config import load_config
from pitcrew.costs.providers import build_providers
from pitcrew.costs.tracker import CostTracker
from pitcrew.idempotency import once_per, persistence_layer
from pitcrew.observability import instrument

# httpx (Azure, GCP) is imported only when configured: not patched, so not loaded at cold start.
instruments = instrument("cost_tracker", traced=("botocore",))
logger = instruments.logger
metrics = instruments.metrics
config = load_config()
idempotency_store = persistence_layer()
# A scheduled event has an id; a run asked for by hand (`aws lambda invoke`, payload {}) has
# none and simply runs.
run_once = once_per("id")
run_once.raise_on_no_idempotency_key = False


@logger.inject_lambda_context
@metrics.log_metrics
@idempotent(persistence_store=idempotency_store, config=run_once)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    costs = config.costs
    if costs is None:  # an omitted section turns the feature off
        logger.info("no costs section in the configuration: nothing to track")
        return {"skipped": "no costs section in the configuration"}
    providers = build_providers(costs)
    tracker = CostTracker(costs, providers, metrics=metrics)
    report = tracker.run()
    logger.info("cost run done", extra={"report": report.as_dict()})
    return report.as_dict()
