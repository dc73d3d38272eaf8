"""The ``rotate_vault`` function: renews the Vault KV v2 secrets listed in ``vault.rotate``
(``pitcrew.rotation.vault``), on an EventBridge schedule.

Lambda handler: ``app.handler``. A concurrent write (check-and-set conflict) or one entry's
failure is reported in the result and as a ``SecretRotationFailed`` event, not raised: the
next scheduled run looks again. Only a failure to reach or log in to Vault fails the run.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pitcrew.config import load_config
from pitcrew.observability import instrument
from pitcrew.rotation.vault import VaultRotation

instruments = instrument("rotate_vault", traced=("botocore",))
logger = instruments.logger
metrics = instruments.metrics
config = load_config()


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if config.vault is None or not config.vault.rotate:
        logger.info("no vault.rotate entries in the configuration: nothing to rotate")
        return {"results": []}
    rotation = VaultRotation(config.vault, rotated_by=f"pitcrew {context.function_name}")
    results = rotation.run()
    for status in ("rotated", "skipped", "conflict", "failed"):
        count = sum(1 for r in results if r.status == status)
        metrics.add_metric(name=f"VaultSecrets{status.capitalize()}", unit="Count", value=count)
    return {"results": [r.as_dict() for r in results]}
