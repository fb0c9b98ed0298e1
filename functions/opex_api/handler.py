"""The Lambda entry point: ``opex_api.handler.handler`` (API Gateway HTTP API, payload v2).

The app is built at import (the cold start), once per container; connections
are opened on first use and reused by later invocations. Mangum's lifespan is
off: it would run start-up and shut-down around every invocation.
"""

from __future__ import annotations

import warnings
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from .app import create_app
from .observability import SERVICE, enable_metrics, logger, metrics

# No auto-patching: patch_all would import and wrap every library X-Ray knows
# (a cold-start cost); the handler's segment covers the request.
tracer = Tracer(service=SERVICE, auto_patch=False)

app = create_app()
_mangum = Mangum(app, lifespan="off", api_gateway_base_path="/")
enable_metrics()
# most requests add no metric; Powertools would warn on every such invocation
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _mangum(event, context)  # type: ignore[arg-type]  # Mangum's own LambdaContext protocol
