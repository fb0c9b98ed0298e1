"""Engine lag probe (a scheduled Lambda): how far each consumer is behind its stream.

For every shard it measures two consumer groups of the contract
(docs/contracts.md): ``engine`` on the input stream ``{p}:in:{shard}`` and
``history`` on the event stream ``{p}:events:{shard}``. For each it reports

- backlog: entries appended to the stream that the group has not read yet;
- lag (ms): age of the oldest of those entries, measured on the Redis clock
  (stream ids are Redis milliseconds), so no clock skew enters;
- pending: entries read but not yet acknowledged (information only: a consumer
  may hold them until a snapshot makes them durable).

as CloudWatch embedded-metric-format lines (Powertools ``single_metric``) in
namespace ``Opex`` with dimensions ``Deployment`` and ``Shard``. The alarms on
``EngineLagMs`` are defined in infra/monitoring_stack.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import redis
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from opex_common.keys import Keys

NAMESPACE = "Opex"
# counting an unknown backlog walks the stream: stop after this many entries
COUNT_CAP = 100_000


@dataclass(frozen=True)
class GroupLag:
    backlog: int
    lag_ms: int
    pending: int


def _id_ms(entry_id: str | bytes | None) -> int:
    assert entry_id is not None
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def group_lag(client: redis.Redis, stream: str, group: str, now_ms: int) -> GroupLag:
    """Backlog, lag and pending of one consumer group on one stream."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:
        return GroupLag(0, 0, 0)  # the stream does not exist yet: nothing to do
    info = next((g for g in groups if _text(g["name"]) == group), None)
    if info is None:
        # the consumer never started: everything in the stream waits for it
        first = client.xrange(stream, count=1)
        if not first:
            return GroupLag(0, 0, 0)
        return GroupLag(int(client.xlen(stream)), max(0, now_ms - _id_ms(first[0][0])), 0)

    last_delivered = _text(info["last-delivered-id"])
    nxt = client.xrange(stream, min=f"({last_delivered}", count=1)
    if not nxt:
        return GroupLag(0, 0, int(info["pending"]))
    backlog = info.get("lag")
    if backlog is None:
        # Redis cannot tell (entries were deleted): count, up to the cap
        backlog = len(client.xrange(stream, min=f"({last_delivered}", count=COUNT_CAP) or [])
    return GroupLag(int(backlog), max(0, now_ms - _id_ms(nxt[0][0])), int(info["pending"]))


def redis_now_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def measure(client: redis.Redis, keys: Keys, shards: int) -> dict[int, dict[str, GroupLag]]:
    now_ms = redis_now_ms(client)
    return {
        shard: {
            "Engine": group_lag(client, keys.input_stream(shard), Keys.ENGINE_GROUP, now_ms),
            "History": group_lag(client, keys.event_stream(shard), Keys.HISTORY_GROUP, now_ms),
        }
        for shard in range(shards)
    }


def emit(results: dict[int, dict[str, GroupLag]], deployment: str) -> None:
    for shard, groups in results.items():
        dimensions = {"Deployment": deployment, "Shard": str(shard)}
        for consumer, lag in groups.items():
            for name, unit, value in (
                (f"{consumer}LagMs", MetricUnit.Milliseconds, lag.lag_ms),
                (f"{consumer}Backlog", MetricUnit.Count, lag.backlog),
                (f"{consumer}Pending", MetricUnit.Count, lag.pending),
            ):
                with single_metric(
                    name=name, unit=unit, value=value, namespace=NAMESPACE, default_dimensions=dimensions
                ):
                    pass


_client: redis.Redis | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:  # noqa: ARG001
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            os.environ["REDIS_URL"], socket_timeout=5, socket_connect_timeout=5, decode_responses=True
        )
    keys = Keys(os.environ.get("KEY_PREFIX", "opex"))
    shards = int(os.environ.get("ENGINE_SHARDS", "1"))
    results = measure(_client, keys, shards)
    emit(results, os.environ.get("DEPLOYMENT", keys.prefix))
    return {
        str(shard): {name: lag.__dict__ for name, lag in groups.items()} for shard, groups in results.items()
    }
