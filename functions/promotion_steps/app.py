"""The ``promotion_steps`` function: every Task state of the promotion state machine, and the
scheduled environment health check. The task's ``step`` says which
(``pitcrew.promotions.steps``).

Lambda handler: ``app.handler``. An error is raised under its own class name, which the
state machine's Retry and Catch match (``PromotionRefused``, ``VerificationFailed``...).
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pitcrew.config import load_config
from pitcrew.observability import instrument
from pitcrew.promotions.steps import PromotionSteps

instruments = instrument("promotion_steps", traced=("botocore", "requests", "httpx"))
logger = instruments.logger
metrics = instruments.metrics
config = load_config()
steps = PromotionSteps(config)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(step=event.get("step"), promotion=(event.get("promotion") or {}).get("id"))
    return steps.handle(event)
