"""Posting to connections: boto3's ``apigatewaymanagementapi`` client in a thread pool.

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
"""

from __future__ import annotations

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
        max_pool_connections=settings.ws_push_threads,
        tcp_keepalive=True,
        # the frames are built here and typed; skipping botocore's validation saves ~10% CPU per post
        parameter_validation=False,
        user_agent_appid="opex-pusher",
    )
    return session.client("apigatewaymanagementapi", endpoint_url=settings.ws_callback_url, config=config)


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
                read_timeout=settings.ws_post_timeout_s, max_connections=settings.ws_push_threads)
            if transport.attach(self.client):
                self.transport = transport
        # the posting threads: a C SimpleQueue of jobs (ThreadPoolExecutor's
        # Future, Condition and RLock per job cost more than the loop's share
        # of a post); at most one job per connection is ever queued (pusher.py)
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"ws-post-{i}", daemon=True)
                         for i in range(settings.ws_push_threads)]
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
        """Run ``fn(*args)`` in a posting thread. RuntimeError once closed."""
        if self._closed:
            raise RuntimeError("the poster is closed")
        self._jobs.put((fn, args))

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
        with contextlib.suppress(queue.Empty):
            while True:
                self._jobs.get_nowait()
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join()
        if self.transport is not None:
            self.transport.close()
