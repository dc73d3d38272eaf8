"""The ``api`` function: pitcrew's HTTP API (webhooks and the operator API), a Chalice app.

Lambda handler: ``app.app``. The configuration is loaded at cold start, so an invalid
configuration stops the function from starting, with every problem in the error.
"""

from pitcrew.api import create_app
from pitcrew.config import load_config
from pitcrew.observability import instrument

instruments = instrument("api")
app = create_app(load_config(), instruments)
