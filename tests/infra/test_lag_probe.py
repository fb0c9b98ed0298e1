"""The engine lag probe against the real Redis."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest
import redis as redis_lib

from infra.lag_probe import lag_probe
from opex_common.keys import Keys

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def client() -> Iterator[redis_lib.Redis]:
    c = redis_lib.Redis.from_url(REDIS_URL, decode_responses=True)
    yield c
    c.close()


@pytest.fixture
def keys(client: redis_lib.Redis) -> Iterator[Keys]:
    k = Keys(f"opex-t-probe-{uuid.uuid4().hex[:8]}")
    yield k
    for key in client.scan_iter(match=f"{k.prefix}:*"):
        client.delete(key)


def add(client: redis_lib.Redis, stream: str, at_ms: int, n: int) -> list[str]:
    return [client.xadd(stream, {"d": "{}"}, id=f"{at_ms}-{i}") for i in range(n)]


def test_no_stream_means_no_lag(client: redis_lib.Redis, keys: Keys) -> None:
    now = lag_probe.redis_now_ms(client)
    assert lag_probe.group_lag(client, keys.input_stream(0), Keys.ENGINE_GROUP, now) == lag_probe.GroupLag(0, 0, 0)


def test_without_a_group_everything_is_backlog(client: redis_lib.Redis, keys: Keys) -> None:
    now = lag_probe.redis_now_ms(client)
    add(client, keys.input_stream(0), now - 4000, 5)
    lag = lag_probe.group_lag(client, keys.input_stream(0), Keys.ENGINE_GROUP, now)
    assert lag.backlog == 5 and 4000 <= lag.lag_ms < 4100 and lag.pending == 0


def test_backlog_lag_and_pending_of_a_consumer_group(client: redis_lib.Redis, keys: Keys) -> None:
    stream = keys.input_stream(0)
    now = lag_probe.redis_now_ms(client)
    add(client, stream, now - 9000, 3)  # read and acknowledged
    add(client, stream, now - 6000, 2)  # read, not yet acknowledged
    add(client, stream, now - 3000, 4)  # not read yet
    client.xgroup_create(stream, Keys.ENGINE_GROUP, id="0")
    done = client.xreadgroup(Keys.ENGINE_GROUP, "engine-0", {stream: ">"}, count=3)
    client.xack(stream, Keys.ENGINE_GROUP, *[entry_id for entry_id, _ in done[0][1]])
    client.xreadgroup(Keys.ENGINE_GROUP, "engine-0", {stream: ">"}, count=2)

    lag = lag_probe.group_lag(client, stream, Keys.ENGINE_GROUP, now)
    assert lag.backlog == 4 and lag.pending == 2
    assert 3000 <= lag.lag_ms < 3100  # the oldest unread entry, on the Redis clock

    client.xreadgroup(Keys.ENGINE_GROUP, "engine-0", {stream: ">"}, count=10)
    caught_up = lag_probe.group_lag(client, stream, Keys.ENGINE_GROUP, now)
    assert caught_up.backlog == 0 and caught_up.lag_ms == 0 and caught_up.pending == 6


def test_handler_emits_embedded_metrics_per_shard(
    client: redis_lib.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = lag_probe.redis_now_ms(client)
    add(client, keys.input_stream(1), now - 2500, 2)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("KEY_PREFIX", keys.prefix)
    monkeypatch.setenv("ENGINE_SHARDS", "2")
    monkeypatch.setenv("DEPLOYMENT", "opex-test")
    monkeypatch.delenv("POWERTOOLS_SERVICE_NAME", raising=False)
    monkeypatch.setattr(lag_probe, "_client", None)

    result = lag_probe.handler({}, None)

    assert result["0"]["Engine"]["backlog"] == 0 and result["1"]["Engine"]["backlog"] == 2
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    metrics = {}
    for line in lines:
        meta = line["_aws"]["CloudWatchMetrics"][0]
        assert meta["Namespace"] == "Opex"
        assert meta["Dimensions"] == [["Deployment", "Shard"]]  # exactly what the alarms select
        name = meta["Metrics"][0]["Name"]
        value = line[name]
        metrics[(name, line["Shard"])] = value[0] if isinstance(value, list) else value
    assert metrics[("EngineLagMs", "1")] >= 2500 and metrics[("EngineLagMs", "0")] == 0
    assert metrics[("EngineBacklog", "1")] == 2
    assert {name for name, _ in metrics} == {
        "EngineLagMs", "EngineBacklog", "EnginePending", "HistoryLagMs", "HistoryBacklog", "HistoryPending",
    }
