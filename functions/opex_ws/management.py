"""Replies to one connection through API Gateway's @connections management API.

API Gateway sends a $default handler's return value back to the client only
when a route response is configured; these handlers never rely on it: every
reply (pong, subscribed, error) is posted like the pusher posts prices, so the
local gateway and AWS behave the same. ``WS_CALLBACK_URL`` is the stage's
callback URL (``https://{api}.execute-api.{region}.amazonaws.com/{stage}``), or
the local gateway (``http://127.0.0.1:8001``).
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

import boto3
import orjson
from botocore.config import Config

from opex_common.settings import Settings

_REGION_IN_URL = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


def callback_region(url: str) -> str:
    """The region to sign for: the Lambda's own, else the one in the callback URL."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        return region
    m = _REGION_IN_URL.search(url)
    return m.group(1) if m else "us-east-1"


def management_client(settings: Settings, *, timeout_s: float, pool: int = 10) -> Any:
    """boto3's apigatewaymanagementapi client for ``settings.ws_callback_url``.

    Outside AWS with no credentials in the environment it signs with dummy
    ones (the local gateway and moto do not check SigV4); the code path is the
    same either way."""
    url = settings.ws_callback_url
    creds: dict[str, str] = {}
    if settings.environment != "aws" and not os.environ.get("AWS_ACCESS_KEY_ID"):
        creds = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    session = boto3.session.Session(region_name=callback_region(url), **creds)
    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"total_max_attempts": 2, "mode": "standard"},
        max_pool_connections=pool,
        user_agent_appid="opex-ws",
    )
    return session.client("apigatewaymanagementapi", endpoint_url=url, config=config)


class Replier:
    """Posts JSON messages to a connection; a vanished connection is not an error."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def post(self, connection_id: str, message: dict[str, Any]) -> bool:
        """True if delivered to API Gateway; False if the connection is gone.
        Other failures raise (ClientError / BotoCoreError)."""
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=orjson.dumps(message))
        except self.client.exceptions.GoneException:
            return False
        return True

    def close(self, connection_id: str) -> None:
        with contextlib.suppress(self.client.exceptions.GoneException):
            self.client.delete_connection(ConnectionId=connection_id)

