"""The pusher's settings: the shared ``Settings`` plus the few fields only it reads."""

from __future__ import annotations

import math
import os
from typing import Literal

from pydantic import Field

from opex_common.settings import Settings


class PusherSettings(Settings):
    # posts in flight at once per process (greenlets or threads, see ws_push_mode);
    # in AWS each post waits ~10 ms on the network, so many at once keep the fan-out short
    ws_push_concurrency: int = Field(default=32, ge=1, le=512)
    # greenlets: each boto3 call in a greenlet on the pusher's event loop, its socket
    # waits on the loop (cooperative.py; needs the keepalive transport); threads: a thread pool.
    # Threads cost ~100 µs of CPU per post in GIL hand-offs.
    ws_push_mode: Literal["greenlets", "threads"] = "greenlets"
    # pusher processes, each owning the connections whose crc32(id) % N is its
    # index: boto3's CPU cost per post is the pusher's limit, and one process
    # uses one CPU. 0 = one per CPU this container may use (cgroup quota,
    # affinity), at most 4; see push_processes().
    ws_push_processes: int = Field(default=0, ge=0, le=64)
    # keepalive: boto3's client over transport.KeepAliveTransport (one sendall
    # per post on persistent connections); botocore: botocore's urllib3 session
    ws_push_transport: Literal["keepalive", "botocore"] = "keepalive"
    # cached: SigV4 by signing.CachedSigV4Auth (botocore's signature, with the
    # signing key and per-URL parts cached; ~35 % of a post's CPU); botocore: botocore's SigV4Auth
    ws_push_signer: Literal["cached", "botocore"] = "cached"
    ws_post_timeout_s: float = Field(default=3.0, gt=0, le=60)
    # full re-read of the registry (changes arrive at once on {p}:ws:changes;
    # this catches what pub/sub dropped and prunes expired entries)
    ws_registry_refresh_s: float = Field(default=5.0, gt=0, le=600)
    # a failed account push is retried this many times, then dropped
    ws_account_retries: int = Field(default=3, ge=0, le=20)
    ws_stats_interval_s: float = Field(default=60.0, gt=0)


AUTO_PROCESSES_MAX = 4


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup v2/v1
    CPU quota (an ECS task with 0.5 vCPU sees the host's CPUs but gets half of one)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota: float | None = None
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            limit, period = f.read().split()[:2]
        if limit != "max":
            quota = int(limit) / int(period)
    except (OSError, ValueError):
        try:
            with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
                q = int(f.read())
            with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
                p = int(f.read())
            if q > 0 and p > 0:
                quota = q / p
        except (OSError, ValueError):
            pass
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def push_processes(settings: PusherSettings) -> int:
    """``WS_PUSH_PROCESSES``, or with 0 one process per available CPU (at most 4)."""
    if settings.ws_push_processes:
        return settings.ws_push_processes
    return min(AUTO_PROCESSES_MAX, available_cpus())


def pusher_settings(settings: Settings | None = None) -> PusherSettings:
    if settings is None:
        return PusherSettings()
    if isinstance(settings, PusherSettings):
        return settings
    return PusherSettings(**settings.model_dump())
