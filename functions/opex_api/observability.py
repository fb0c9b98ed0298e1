"""Powertools Logger, Metrics and Tracer for the API.

The same JSON log shape everywhere (Lambda, uvicorn, tests). The correlation
id is the API Gateway request id in Lambda (set by the handler) and the
``X-Request-Id`` header, or a generated id, elsewhere (set by the middleware).

The Tracer (X-Ray) lives in the handler module: importing the X-Ray SDK is a
large part of a cold start, and only the Lambda uses it.

Metrics are EMF lines flushed by the Lambda handler's ``log_metrics``; outside
Lambda nothing would flush them, so they are only collected when the handler
module turns them on.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "opex-api")

logger = Logger(service=SERVICE, level=os.environ.get("POWERTOOLS_LOG_LEVEL", os.environ.get("LOG_LEVEL", "INFO")))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Opex"), service=SERVICE)

_metrics_on = False


def enable_metrics() -> None:
    global _metrics_on
    _metrics_on = True


def count(name: str, value: int = 1) -> None:
    """Add to a count metric (a no-op unless the Lambda handler flushes them)."""
    if _metrics_on:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
