"""The ``rotate_secret`` function: Secrets Manager's rotation function for pitcrew's secrets.

Lambda handler: ``app.handler``, invoked by Secrets Manager once per step (``createSecret``,
``setSecret``, ``testSecret``, ``finishSecret``). The work is ``pitcrew.rotation.protocol``'s;
the secret's ``pitcrew:rotation`` tag chooses the strategy. A failed step raises, so Secrets
Manager stops the rotation and tries again later; every step is safe to repeat.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pitcrew.config import load_config
from pitcrew.observability import instrument
from pitcrew.rotation.protocol import SecretRotation

instruments = instrument("rotate_secret", traced=("botocore",))
logger = instruments.logger
metrics = instruments.metrics
config = load_config()
rotation = SecretRotation(config)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    logger.append_keys(secret_id=event.get("SecretId"), step=event.get("Step"))
    step = rotation.handle(event)
    metrics.add_metric(name=f"Rotation{step[0].upper()}{step[1:]}", unit="Count", value=1)
