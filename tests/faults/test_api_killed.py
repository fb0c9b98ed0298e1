"""Fault: the API process is killed (SIGKILL) while requests are in flight.

The API runs under uvicorn as the local stack runs it; clients open trades over
HTTP, each request with its own Idempotency-Key. uvicorn is killed twice:

1. under load, wherever the requests happen to be;
2. with the engine paused for a moment first (SIGSTOP), so that requests are
   certainly in flight *after* their command reached the engine's stream:
   the client sees the connection drop, the engine applies the command.

For every request: a 200 means the trade exists, exactly once; an error means
it either does not exist or exists once, and re-sending the request with the
same Idempotency-Key (once the API is back) returns the original trade and
applies nothing twice.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import redis as redis_lib

from tests.faults.support import (
    BTC,
    ETH,
    SOL,
    Figures,
    Proc,
    free_port,
    record_figures,
    run_checker,
    wait_until,
)

API = "/api/v1"
WORKERS = 6
PRICES = {BTC: (970_000_000, 970_010_000), ETH: (35_000_000, 35_001_000), SOL: (2_000_000, 2_000_100)}
QTY = {BTC: 0.0001, ETH: 0.001, SOL: 0.01}


class ApiServer:
    def __init__(self, settings: Any, log_dir: Any) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Proc | None = None

    def start(self, timeout: float = 30.0) -> float:
        """Start uvicorn (one worker: its pid is the server); seconds until it answers."""
        t0 = time.monotonic()
        self.proc = Proc("api", [sys.executable, "-m", "uvicorn", "opex_api.app:app", "--host", "127.0.0.1",
                                 "--port", str(self.port), "--workers", "1", "--no-access-log",
                                 "--log-level", "warning"], self.settings, self.log_dir,
                         POWERTOOLS_LOG_LEVEL="WARNING").start()

        def up() -> bool:
            assert self.proc is not None
            if not self.proc.alive():
                raise RuntimeError("uvicorn exited: " + self.proc.log_tail())
            try:
                return httpx.get(f"{self.url}{API}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout, "uvicorn", 0.05)
        return time.monotonic() - t0

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()


def ticker(settings: Any, stop: threading.Event) -> None:
    """Constant prices, a tick per market every 0.5 s (nothing moves: no liquidation)."""
    r = redis_lib.Redis.from_url(settings.redis_url)
    try:
        while True:
            pipe = r.pipeline(transaction=False)
            for market, (bid, ask) in PRICES.items():
                tick = {"type": "tick", "market": market, "bid": bid, "ask": ask, "mark": (bid + ask) // 2,
                        "index": (bid + ask) // 2, "funding_rate": 0, "next_funding_ms": 0}
                pipe.xadd(settings.keys.input_stream(0), {"d": orjson.dumps(tick)})
                pipe.hset(settings.keys.prices(), market, orjson.dumps({**tick, "ts": int(time.time() * 1000)}))
            pipe.execute()
            if stop.wait(0.5):
                return
    finally:
        r.close()


@dataclass
class Attempt:
    key: str
    worker: int
    body: dict[str, Any]
    status: int | None = None  # None: no HTTP answer (connection refused / dropped)
    error: str = ""
    order_id: str | None = None
    retry_status: int | None = None
    retry_order_id: str | None = None
    t: float = 0.0  # sent
    done: float = 0.0  # answered


def open_body(i: int) -> dict[str, Any]:
    market = (BTC, ETH, SOL)[i % 3]
    return {"asset": market, "type": "long" if i % 2 else "short", "quantity": QTY[market], "leverage": 10,
            "slippage": 100, "openPrice": PRICES[market][1] if i % 2 else PRICES[market][0]}


@pytest.mark.slow
@pytest.mark.integration
def test_api_killed_mid_request(engine_factory, settings, redis, tmp_path, start_history) -> None:  # type: ignore[no-untyped-def]
    s = settings.model_copy(update={"reply_timeout_s": 3.0})
    engine = engine_factory(settings_override=s).start()
    start_history(s)
    stop_ticks = threading.Event()
    ticks = threading.Thread(target=ticker, args=(s, stop_ticks), daemon=True)
    ticks.start()
    api = ApiServer(s, tmp_path)
    api.start()
    attempts: list[Attempt] = []
    lock = threading.Lock()
    stop = threading.Event()
    tokens: list[str] = []
    try:
        with httpx.Client(base_url=api.url, timeout=10) as c:
            for _ in range(WORKERS):
                body = {"email": f"k{uuid.uuid4().hex[:10]}@example.com", "password": "correct horse battery"}
                assert c.post(f"{API}/user/signup", json=body).status_code == 201
                r = c.post(f"{API}/user/signin", json=body)
                assert r.status_code == 200
                tokens.append(r.cookies["jwt"])

        def worker(w: int) -> None:
            hdr = {"Authorization": f"Bearer {tokens[w]}"}
            i = 0
            with httpx.Client(base_url=api.url, timeout=10, headers=hdr) as c:
                while not stop.is_set():
                    i += 1
                    a = Attempt(uuid.uuid4().hex, w, open_body(i + w), t=time.monotonic())
                    with lock:
                        attempts.append(a)
                    try:
                        r = c.post(f"{API}/trade/open", json=a.body, headers={"Idempotency-Key": a.key})
                        a.status = r.status_code
                        if r.status_code == 200:
                            a.order_id = r.json()["orderId"]
                        else:
                            a.error = r.text[:200]
                    except httpx.HTTPError as exc:
                        a.error = f"{exc.__class__.__name__}: {exc}"[:200]
                        time.sleep(0.05)  # the server is down: do not spin
                    a.done = time.monotonic()
                    time.sleep(0.01)

        recover: list[float] = []
        with ThreadPoolExecutor(WORKERS) as pool:
            futures = [pool.submit(worker, w) for w in range(WORKERS)]
            time.sleep(1.5)
            # 1. killed wherever the requests are
            killed_at = time.monotonic()
            api.kill()
            api.start()
            recover.append(wait_until(lambda: _first_ok_after(attempts, lock, killed_at), 30, "a 200") - killed_at)
            time.sleep(1.0)
            # 2. the engine pauses, requests pile up after their XADD, then the API dies
            assert engine.proc is not None
            os.kill(engine.proc.pid, signal.SIGSTOP)
            try:
                time.sleep(0.4)
                killed_at = time.monotonic()
                api.kill()
            finally:
                os.kill(engine.proc.pid, signal.SIGCONT)
            api.start()
            recover.append(wait_until(lambda: _first_ok_after(attempts, lock, killed_at), 30, "a 200") - killed_at)
            time.sleep(1.0)
            stop.set()
            for f in futures:
                f.result(30)

        # what exists now, before any retry
        def open_ids(c: httpx.Client) -> list[str]:
            ids = []
            for tok in tokens:
                r = c.get(f"{API}/trade/open", headers={"Authorization": f"Bearer {tok}"})
                assert r.status_code == 200, r.text
                ids += [t["id"] for t in r.json()["trades"]]
            return ids

        with httpx.Client(base_url=api.url, timeout=10) as c:
            time.sleep(0.5)  # the engine has answered everything it was sent
            before = open_ids(c)
            ok = [a for a in attempts if a.status == 200]
            errors = [a for a in attempts if a.status != 200]
            problems: list[str] = []
            if len(before) != len(set(before)):
                problems.append("a trade id is listed twice")
            acked = [a.order_id for a in ok]
            if len(set(acked)) != len(acked):
                problems.append("two requests were answered with the same trade")
            lost = [a for a in ok if a.order_id not in before]
            applied_despite_error = set(before) - set(acked)
            if len(applied_despite_error) > len(errors):
                problems.append(f"{len(applied_despite_error)} trades no client was told of, "
                                f"but only {len(errors)} requests failed")
            # every failed request again, with its Idempotency-Key
            for a in errors:
                r = c.post(f"{API}/trade/open", json=a.body,
                           headers={"Idempotency-Key": a.key, "Authorization": f"Bearer {tokens[a.worker]}"})
                a.retry_status = r.status_code
                if r.status_code == 200:
                    a.retry_order_id = r.json()["orderId"]
            after = open_ids(c)
        retried_ok = [a for a in errors if a.retry_status == 200]
        recovered = [a for a in retried_ok if a.retry_order_id in applied_despite_error]
        if len(recovered) != len(applied_despite_error):
            problems.append(f"{len(applied_despite_error)} trades were applied despite an error, but only "
                            f"{len(recovered)} retries returned them")
        dup = len(after) - len(set(after)) + max(0, len(after) - len(ok) - len(retried_ok))
        if sorted(after) != sorted([a.order_id for a in ok] + [a.retry_order_id for a in retried_ok]):
            problems.append("after the retries, the open trades are not exactly one per request")
    finally:
        stop.set()
        stop_ticks.set()
        api.kill()

    report = run_checker(s)
    dropped = [a for a in errors if a.status is None and "ConnectError" not in a.error]
    fig = Figures("api_killed")
    fig.attempted, fig.acknowledged = len(attempts), len(ok)
    fig.refused = sum(1 for a in errors if a.status is not None)
    fig.lost, fig.duplicated = len(lost), dup
    fig.recover_s = max(recover)
    fig.extra = {"kills": 2, "recover_each_s": [round(x, 2) for x in recover],
                 "errors_seen": len(errors), "dropped_mid_request": len(dropped),
                 "applied_despite_error": len(applied_despite_error),
                 "retried_ok": len(retried_ok), "recover_means": "SIGKILL -> uvicorn restarted -> first 200"}
    record_figures(fig)
    ticks.join(5)

    assert dropped, "no request was in flight when uvicorn died"
    assert applied_despite_error, "the engine-paused kill left no command applied behind a dropped request"
    assert all(a.retry_status == 200 for a in errors), [(a.error, a.retry_status) for a in errors][:5]
    assert problems == []
    assert fig.lost == 0 and fig.duplicated == 0
    assert report.ok, report.problems


def _first_ok_after(attempts: list[Attempt], lock: threading.Lock, t0: float) -> float | None:
    with lock:
        times = [a.done for a in attempts if a.t > t0 and a.status == 200]
    return min(times) if times else None
