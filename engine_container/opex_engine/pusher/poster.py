"""Posting to connections: boto3's ``apigatewaymanagementapi`` client, many posts at once.

The endpoint is the one setting ``WS_CALLBACK_URL``: the stage's callback URL
in AWS (``https://{api}.execute-api.{region}.amazonaws.com/{stage}``), the
local gateway locally (``http://127.0.0.1:8001``). Nothing here knows which.

``post`` never raises: it returns OK, GONE (HTTP 410, the client left: the
caller drops that connection) or FAILED (anything else: throttling, a
timeout, an outage). Botocore retries nothing (a price frame is superseded
within half a second; the pusher retries account frames itself).

With ``WS_PUSH_TRANSPORT=keepalive`` (the default) the client's HTTP session
is ``transport.KeepAliveTransport``: boto3 still serializes, signs and parses
every post, but the request goes out in one ``sendall`` on a persistent
connection instead of through urllib3 + ``http.client``, which was ~2/3 of
the CPU of a post (see transport.py). ``botocore`` keeps botocore's session.

With ``WS_PUSH_SIGNER=cached`` (the default) the client signs with
``signing.CachedSigV4Auth``, botocore's SigV4 with the signing key and the
per-URL parts cached (chosen through botocore's ``choose-signer`` event, and
only after a self-check that it signs exactly as botocore does).

Up to ``WS_PUSH_CONCURRENCY`` posts are in flight at once. With
``WS_PUSH_MODE=greenlets`` (the default) each runs in a greenlet on the
pusher's event loop and waits for its socket there (cooperative.py): no
thread, no GIL hand-off. ``threads`` runs them in as many threads; so does a
poster without the keep-alive transport, whose sockets would block the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import signing
from .config import PusherSettings
from .cooperative import Hub
from .transport import KeepAliveTransport

log = logging.getLogger("opex.pusher")

OK, GONE, FAILED = 0, 1, 2
_REGION_IN_URL = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


def callback_region(url: str) -> str:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        return region
    m = _REGION_IN_URL.search(url)
    return m.group(1) if m else "us-east-1"


# Handlers botocore runs on every call that do nothing for the pusher's posts
# (ECS, PostToConnection: no idempotency token, no checksum member, no API
# version header, not in a Lambda). Dropped from this client's own event
# system with its documented ``unregister``; ~10 % of a post's CPU together.
_IDLE_HANDLERS = (
    ("before-parameter-build", "generate_idempotent_uuid"),
    ("before-parameter-build", "_handle_request_validation_mode_member"),
    ("before-call", "add_recursion_detection_header"),  # Lambda's X-Amzn-Trace-Id only
    ("before-call", "inject_api_version_header_if_needed"),
)


def drop_idle_handlers(client: Any) -> list[str]:
    """Unregister ``_IDLE_HANDLERS`` and the second build of the User-Agent
    (``rebuild_and_replace_user_agent_handler`` rebuilds, after signing's set-up,
    the string ``_convert_to_request_dict`` already set: the header stays
    botocore's, its ``m/`` feature list as known before signing). Returns the
    names unregistered (botocore's ``unregister`` of a handler no longer
    registered does nothing, so a second call names them again); a handler
    this botocore does not have at all is skipped."""
    from botocore import handlers

    dropped: list[str] = []
    events = client.meta.events
    for event, name in _IDLE_HANDLERS:
        handler = getattr(handlers, name, None)
        if handler is None:
            continue
        try:
            events.unregister(event, handler)
        except (AttributeError, KeyError, ValueError):
            continue
        dropped.append(name)
    creator = getattr(client, "_user_agent_creator", None)
    rebuild = getattr(creator, "rebuild_and_replace_user_agent_handler", None)
    if rebuild is not None:
        try:
            events.unregister(f"request-created.{client.meta.service_model.service_id.hyphenize()}", rebuild)
            dropped.append("rebuild_and_replace_user_agent_handler")
        except (AttributeError, KeyError, ValueError):
            pass
    return dropped


def management_client(settings: PusherSettings) -> Any:
    """The boto3 client. Outside AWS with no credentials in the environment it
    signs with dummy ones (the local gateway does not check SigV4): same code path."""
    creds: dict[str, str] = {}
    if settings.environment != "aws" and not os.environ.get("AWS_ACCESS_KEY_ID"):
        creds = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    session = boto3.session.Session(region_name=callback_region(settings.ws_callback_url), **creds)
    config = Config(
        connect_timeout=min(2.0, settings.ws_post_timeout_s),
        read_timeout=settings.ws_post_timeout_s,
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=settings.ws_push_concurrency,
        tcp_keepalive=True,
        # the frames are built here and typed; skipping botocore's validation saves ~10% CPU per post
        parameter_validation=False,
        user_agent_appid="opex-pusher",
    )
    client = session.client("apigatewaymanagementapi", endpoint_url=settings.ws_callback_url, config=config)
    drop_idle_handlers(client)
    return client


class Poster:
    def __init__(self, settings: PusherSettings, client: Any | None = None) -> None:
        self.client = client if client is not None else management_client(settings)
        self.transport: KeepAliveTransport | None = None
        self.cached_signer = False
        if client is None and settings.ws_push_signer == "cached":
            self.cached_signer = signing.enable(self.client)
        if client is None and settings.ws_push_transport == "keepalive":
            transport = KeepAliveTransport(
                settings.ws_callback_url, connect_timeout=min(2.0, settings.ws_post_timeout_s),
                read_timeout=settings.ws_post_timeout_s, max_connections=settings.ws_push_concurrency)
            if transport.attach(self.client):
                self.transport = transport
        self.concurrency = settings.ws_push_concurrency
        # greenlets need the keep-alive transport (its waits go to the loop)
        self.mode = "greenlets" if settings.ws_push_mode == "greenlets" and self.transport is not None else "threads"
        self._hub: Hub | None = None  # bound to the running loop by the first submit
        # the posting threads: a C SimpleQueue of jobs (ThreadPoolExecutor's
        # Future, Condition and RLock per job cost more than the loop's share
        # of a post); at most one job per connection is ever queued (pusher.py)
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"ws-post-{i}", daemon=True)
                         for i in range(self.concurrency if self.mode == "threads" else 0)]
        for t in self._threads:
            t.start()
        self._gone = self.client.exceptions.GoneException
        self._lock = threading.Lock()
        self.last_error: str | None = None
        self.posts = 0
        self.post_seconds = 0.0  # summed wall time of the posts (threads overlap)

    def post(self, connection_id: str, data: bytes) -> tuple[int, float]:
        """Post ``data``; returns the outcome and when (``time.monotonic()``) the post began."""
        started = time.monotonic()
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data)
        except self._gone:
            return GONE, started
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            self.last_error = f"{err.get('Code')} ({status}): {err.get('Message')}"[:300]
            return (GONE if status == 410 else FAILED), started
        except (BotoCoreError, OSError, ValueError) as exc:
            self.last_error = f"{exc.__class__.__name__}: {exc}"[:300]
            return FAILED, started
        finally:
            elapsed = time.monotonic() - started
            with self._lock:
                self.posts += 1
                self.post_seconds += elapsed
        return OK, started

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` in a posting thread or greenlet. RuntimeError once
        closed. In greenlet mode the first call must come from the event loop's
        thread, with the loop running: the posts run on that loop."""
        if self._closed:
            raise RuntimeError("the poster is closed")
        if self.mode == "threads":
            self._jobs.put((fn, args))
            return
        if self._hub is None:
            self._hub = Hub(asyncio.get_running_loop(), self.concurrency)
        self._hub.submit(fn, *args)

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, args = job
            try:
                fn(*args)
            except Exception:  # a job never raises (post() does not); never lose the thread
                log.exception("posting job failed")

    def warm_up(self) -> None:
        """One request so that botocore's lazy set-up (endpoint rules, signer,
        connection) is not paid by the first frame. Any answer will do."""
        with contextlib.suppress(ClientError, BotoCoreError, OSError):
            self.client.get_connection(ConnectionId="warm-up")

    def close(self) -> None:
        """Drop the jobs not started, wait for the posts in progress."""
        if self._closed:
            return
        self._closed = True
        if self._hub is not None:
            self._hub.close()
        with contextlib.suppress(queue.Empty):
            while True:
                self._jobs.get_nowait()
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join()
        if self.transport is not None:
            self.transport.close()
