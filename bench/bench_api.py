"""REST API benchmark: the local stack's API (uvicorn) and a real engine.

200 users, each signed up and signed in through the API, loop open-then-close
(``POST /trade/open`` then ``POST /trade/close``) at concurrency 1, 16 and 64;
then ``GET /balance`` alone at the same concurrencies. Reported per level:
p50/p99 latency of each request, successful requests per second, and errors
(any non-2xx or transport failure) counted separately. Also: the Lambda
cold-start import time of ``opex_api.handler`` in a fresh interpreter.

Everything runs on this machine: Redis and Postgres from the environment, a
Mongo-wire server for the engine's snapshots, the engine, the API, a fixed
price feed (so no order is refused for slippage), and the load generator (a
small keep-alive HTTP/1.1 client on raw asyncio streams, so the client costs
little of the CPU the API and the engine share). The load generator and the
services share the machine's cores, so the figures are a floor.

    python bench/bench_api.py [--out bench/results/api.json] [--quick] [--workers N] [--levels 64]

Each level also reports the CPU time per request (open or close; balance) of
the API workers, the engine and the load generator, from ``/proc/<pid>/stat``
over the measured phase: on a shared machine that moves much less than the
wall-clock figures, so compare versions with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in ("layers/common/python", "engine_container", "functions", "."):
    sys.path.insert(0, str(ROOT / p))

import orjson  # noqa: E402
import psycopg  # noqa: E402
import redis as redis_lib  # noqa: E402

from opex_common.migrations import migrate  # noqa: E402

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PG_ADMIN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PYTHONPATH = os.pathsep.join(str(ROOT / p) for p in ("layers/common/python", "engine_container", "functions", "."))
API = "/api/v1"
USERS = 200
LEVELS = (1, 16, 64)
BTC = "BTC_USDC_PERP"
BID, ASK = 970_000_000, 970_010_000
OPEN_BODY = orjson.dumps({"asset": BTC, "type": "long", "quantity": 0.001, "leverage": 10, "slippage": 100,
                          "openPrice": ASK, "decimal": 4})
TARGETS = {"opens_per_s_64": 1000, "open_p99_ms": 50}


# ---------------------------------------------------------------------- HTTP client
class Http:
    """One keep-alive HTTP/1.1 connection (the API answers with Content-Length)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: bytes | None = None,
                      cookie: str | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if cookie:
            head += f"Cookie: jwt={cookie}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        try:
            status_line = await self.reader.readline()
            if not status_line:
                raise ConnectionError("connection closed")
            status = int(status_line.split(b" ", 2)[1])
            length = 0
            while True:
                line = await self.reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            payload = await self.reader.readexactly(length) if length else b""
        except (OSError, ValueError, asyncio.IncompleteReadError):
            self.close()
            raise
        return status, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# ---------------------------------------------------------------------- measurement
@dataclass
class Stat:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    def ok(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def fail(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what[:200])

    def summary(self, duration: float) -> dict[str, Any]:
        lat = sorted(self.latencies)
        n = len(lat)

        def pct(q: float) -> float:
            return round(lat[min(n - 1, int(q * n))] * 1000, 2) if n else 0.0

        return {"ok": n, "errors": self.errors, "per_s": round(n / duration, 1), "p50_ms": pct(0.50),
                "p99_ms": pct(0.99), "mean_ms": round(statistics.fmean(lat) * 1000, 2) if n else 0.0,
                "error_samples": self.error_samples}


async def timed(http: Http, method: str, path: str, body: bytes | None, token: str, stat: Stat,
                record: bool) -> bytes | None:
    """One request; its latency (2xx) or its error counted in ``stat`` when
    ``record``; a transport failure always counts. The body on success, else None."""
    t0 = time.perf_counter()
    try:
        status, out = await http.request(method, f"{API}{path}", body, token)
    except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
        stat.fail(repr(exc))
        return None
    if record:
        if status == 200:
            stat.ok(time.perf_counter() - t0)
        else:
            stat.fail(f"{status} {out[:150]!r}")
    return out if status == 200 else None


async def trade_loop(http: Http, users: list[dict[str, str]], stop_at: float, record: bool,
                     opens: Stat, closes: Stat) -> None:
    i = 0
    while time.perf_counter() < stop_at:
        user = users[i % len(users)]
        i += 1
        body = await timed(http, "POST", "/trade/open", OPEN_BODY, user["token"], opens, record)
        if body is None:
            continue
        close_body = orjson.dumps({"orderId": orjson.loads(body)["orderId"]})
        await timed(http, "POST", "/trade/close", close_body, user["token"], closes, record)


async def balance_loop(http: Http, users: list[dict[str, str]], stop_at: float, record: bool,
                       balances: Stat) -> None:
    i = 0
    while time.perf_counter() < stop_at:
        user = users[i % len(users)]
        i += 1
        await timed(http, "GET", "/balance", None, user["token"], balances, record)


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_s(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def child_pids(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@dataclass
class CpuProbe:
    """CPU seconds used so far by the API workers, the engine and this process."""

    api: list[int]
    engine: list[int]

    def sample(self) -> dict[str, float]:
        t = os.times()
        return {"api": sum(proc_cpu_s(p) for p in self.api), "engine": sum(proc_cpu_s(p) for p in self.engine),
                "client": t.user + t.system}


def cpu_per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """ms of CPU per request of each party over a phase."""
    return {f"{k}_cpu_ms_per_req": round((after[k] - before[k]) * 1000 / max(1, requests), 3) for k in before}


async def run_level(port: int, users: list[dict[str, str]], concurrency: int, seconds: float,
                    warmup: float, kind: str, probe: CpuProbe | None = None) -> dict[str, Any]:
    """``concurrency`` clients, each with its own connection and its own share of the users."""
    conns = [Http("127.0.0.1", port) for _ in range(concurrency)]
    shares = [users[k::concurrency] or users for k in range(concurrency)]
    results: dict[str, Any] = {}
    for phase, record in (("warmup", False), ("measure", True)):
        duration = warmup if phase == "warmup" else seconds
        if duration <= 0:
            continue
        opens, closes, balances = Stat(), Stat(), Stat()
        stop_at = time.perf_counter() + duration
        cpu0 = probe.sample() if probe is not None and record else None
        t0 = time.perf_counter()
        if kind == "trade":
            await asyncio.gather(*(trade_loop(c, s, stop_at, record, opens, closes) for c, s in zip(conns, shares, strict=True)))
        else:
            await asyncio.gather(*(balance_loop(c, s, stop_at, record, balances) for c, s in zip(conns, shares, strict=True)))
        elapsed = time.perf_counter() - t0
        if record:
            if kind == "trade":
                results = {"open": opens.summary(elapsed), "close": closes.summary(elapsed)}
            else:
                results = {"balance": balances.summary(elapsed)}
            results["seconds"] = round(elapsed, 2)
            if probe is not None and cpu0 is not None:
                stats = (opens, closes) if kind == "trade" else (balances,)
                n = sum(len(st.latencies) + st.errors for st in stats)
                results["cpu"] = cpu_per_request(cpu0, probe.sample(), n)
    for c in conns:
        c.close()
    return results


# ---------------------------------------------------------------------- the stack
class PriceFeed(threading.Thread):
    """Fixed BTC/ETH/SOL prices, a tick a second (fills never miss the slippage)."""

    def __init__(self, prefix: str) -> None:
        super().__init__(daemon=True)
        self.prefix = prefix
        self.stop_event = threading.Event()

    def publish(self, r: redis_lib.Redis) -> None:
        now = int(time.time() * 1000)
        pipe = r.pipeline(transaction=False)
        for market, bid, ask in ((BTC, BID, ASK), ("ETH_USDC_PERP", 35_000_000, 35_001_000),
                                 ("SOL_USDC_PERP", 2_000_000, 2_000_100)):
            tick = {"type": "tick", "market": market, "bid": bid, "ask": ask, "mark": (bid + ask) // 2,
                    "index": (bid + ask) // 2, "funding_rate": 0, "next_funding_ms": 0}
            pipe.xadd(f"{self.prefix}:in:0", {"d": orjson.dumps(tick)})
            pipe.hset(f"{self.prefix}:prices", market, orjson.dumps({**tick, "ts": now, "source": "bench"}))
        pipe.execute()

    def run(self) -> None:
        r = redis_lib.Redis.from_url(REDIS_URL)
        while not self.stop_event.wait(1.0):
            self.publish(r)
        r.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready in {timeout}s")
        time.sleep(0.05)


async def create_users(port: int, n: int) -> list[dict[str, str]]:
    users: list[dict[str, str]] = []
    sem = asyncio.Semaphore(8)
    run = uuid.uuid4().hex[:6]

    async def one(i: int) -> None:
        async with sem:
            http = Http("127.0.0.1", port)
            creds = orjson.dumps({"email": f"bench{run}-{i}@example.com", "password": "bench password 1"})
            status, body = await http.request("POST", f"{API}/user/signup", creds)
            assert status == 201, body
            http.close()
            # read the Set-Cookie header: a separate small request with headers kept
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"POST {API}/user/signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(creds)}\r\nConnection: close\r\n\r\n".encode() + creds)
            raw = await reader.read()
            writer.close()
            for line in raw.split(b"\r\n"):
                if line.lower().startswith(b"set-cookie: jwt="):
                    token = line.split(b"=", 1)[1].split(b";", 1)[0].decode()
                    users.append({"email": f"bench{run}-{i}", "token": token})
                    return
            raise RuntimeError(f"signin gave no cookie: {raw[:300]!r}")

    await asyncio.gather(*(one(i) for i in range(n)))
    return users


_COLD = """
import time
t0 = time.perf_counter()
import opex_api.handler as h
t1 = time.perf_counter()
event = {"version": "2.0", "routeKey": "$default", "rawPath": "/api/v1/markets", "rawQueryString": "",
         "headers": {"host": "x"}, "isBase64Encoded": False,
         "requestContext": {"http": {"method": "GET", "path": "/api/v1/markets", "protocol": "HTTP/1.1",
                                     "sourceIp": "127.0.0.1", "userAgent": "bench"},
                            "requestId": "cold", "routeKey": "$default", "stage": "$default"}}
class Ctx:
    function_name = "bench"; memory_limit_in_mb = 512; aws_request_id = "cold"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:bench"
    def get_remaining_time_in_millis(self): return 30000
out = h.handler(event, Ctx())
t2 = time.perf_counter()
assert out["statusCode"] == 200, out
print(t1 - t0, t2 - t0)
"""


def cold_start_import(env: dict[str, str], repeats: int = 5) -> dict[str, Any]:
    """A fresh interpreter per run: the import of opex_api.handler (what a Lambda
    cold start pays before the first event), and that plus the first invocation
    (GET /api/v1/markets: the first Redis connection included)."""
    imports, firsts = [], []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", _COLD], env={**env, "POWERTOOLS_METRICS_NAMESPACE": "Bench"},
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        a, b = (float(x) for x in out.stdout.strip().splitlines()[-1].split())
        imports.append(a)
        firsts.append(b)
    return {"median_ms": round(statistics.median(imports) * 1000, 1), "min_ms": round(min(imports) * 1000, 1),
            "runs_ms": [round(t * 1000, 1) for t in imports],
            "first_response_median_ms": round(statistics.median(firsts) * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "bench/results/api.json"))
    parser.add_argument("--quick", action="store_true", help="shorter phases (about a minute in all)")
    # 2 uvicorn workers, as the local stack runs the API (API_WORKERS): on 2 cores
    # one worker is the bottleneck while the engine uses a fraction of the other
    parser.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_API_WORKERS", "2")))
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per level and phase")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)),
                        help="concurrency levels, comma-separated (the summary needs 64)")
    parser.add_argument("--skip-cold-start", action="store_true", help="do not measure the Lambda import")
    args = parser.parse_args()
    levels_run = tuple(int(x) for x in args.levels.split(","))
    seconds = args.seconds or (4.0 if args.quick else 8.0)
    warmup = 1.0

    load_before = os.getloadavg()
    prefix = f"bench-api-{uuid.uuid4().hex[:8]}"
    db = f"opex_bench_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="opex-bench-api-"))
    procs: list[subprocess.Popen[bytes]] = []
    mongo = None
    feed = PriceFeed(prefix)
    r = redis_lib.Redis.from_url(REDIS_URL)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = f"{PG_ADMIN.rsplit('/', 1)[0]}/{db}"
    try:
        migrate(dsn)
        mongo_url = os.environ.get("MONGO_URL")
        if not mongo_url:
            from opex_engine.localstack import start_mongo_wire

            mongo = start_mongo_wire(work / "mongo")
            mongo_url = mongo.url
        env = {**os.environ, "PYTHONPATH": PYTHONPATH, "KEY_PREFIX": prefix, "REDIS_URL": REDIS_URL,
               "DATABASE_URL": dsn, "MONGO_URL": mongo_url, "MONGO_DB": f"opex_{prefix}", "ENVIRONMENT": "local",
               "JWT_SECRET": uuid.uuid4().hex * 2, "SIGNUP_RATE_PER_MIN": "100000",
               "SIGNIN_RATE_PER_MIN": "100000", "LOG_LEVEL": "WARNING",
               "POWERTOOLS_LOG_LEVEL": "WARNING"}
        cold = ({"median_ms": 0.0, "min_ms": 0.0, "runs_ms": [], "first_response_median_ms": 0.0}
                if args.skip_cold_start else cold_start_import(env))

        log = open(work / "engine.log", "ab")  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, "-m", "opex_engine", "engine", "--shard", "0"], env=env,
                                      stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
        _wait(lambda: b'"ready"' in (r.get(f"{prefix}:engine:0:status") or b""), 30, "engine")
        feed.publish(r)
        feed.start()
        port = _free_port()
        api_log = open(work / "api.log", "ab")  # noqa: SIM115
        procs.append(subprocess.Popen(
            # as the local stack runs it (engine_container/opex_engine/stack.py): uvicorn with httptools
            # and uvloop, no access log, no proxy headers, one SO_REUSEPORT socket per worker
            [sys.executable, "-m", "opex_api.serve", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(args.workers), "--log-level", "warning", "--backlog", "4096"],
            env=env, stdout=api_log, stderr=subprocess.STDOUT, cwd=ROOT))

        def api_up() -> bool:
            try:
                import httpx

                return httpx.get(f"http://127.0.0.1:{port}{API}/health", timeout=1).status_code == 200
            except Exception:
                return False

        _wait(api_up, 30, "API")
        api_pid = procs[-1].pid
        # several workers: the children of the supervisor; one: the process itself
        _wait(lambda: args.workers <= 1 or len(child_pids(api_pid)) >= args.workers, 30, "API workers")
        probe = CpuProbe(api=child_pids(api_pid) if args.workers > 1 else [api_pid], engine=[procs[0].pid])
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass

        t_users = time.perf_counter()
        users = asyncio.run(create_users(port, USERS))
        users_s = time.perf_counter() - t_users

        levels = []
        for c in levels_run:
            trade = asyncio.run(run_level(port, users, c, seconds, warmup, "trade", probe))
            bal = asyncio.run(run_level(port, users, c, seconds / 2, 0.5, "balance", probe))
            levels.append({"concurrency": c, **trade, "balance": bal["balance"], "balance_cpu": bal["cpu"]})
            print(f"c={c:>3}  open p50 {trade['open']['p50_ms']:>6} ms p99 {trade['open']['p99_ms']:>6} ms "
                  f"{trade['open']['per_s']:>7}/s  close p50 {trade['close']['p50_ms']:>6} ms "
                  f"p99 {trade['close']['p99_ms']:>6} ms {trade['close']['per_s']:>7}/s  "
                  f"balance p50 {bal['balance']['p50_ms']:>6} ms p99 {bal['balance']['p99_ms']:>6} ms "
                  f"{bal['balance']['per_s']:>7}/s  errors {trade['open']['errors']}/"
                  f"{trade['close']['errors']}/{bal['balance']['errors']}", flush=True)
            print(f"       CPU ms per request: trade {trade['cpu']}  balance {bal['cpu']}", flush=True)
    finally:
        feed.stop_event.set()
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if mongo is not None:
            mongo.stop()
        for key in r.scan_iter(match=f"{prefix}:*", count=1000):
            r.delete(key)
        r.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    top = next((lv for lv in levels if lv["concurrency"] == 64), levels[-1])
    errors = sum(lv["open"]["errors"] + lv["close"]["errors"] + lv["balance"]["errors"] for lv in levels)
    table = ["| concurrency | open p50 / p99 (ms) | opens/s | close p50 / p99 (ms) | closes/s | "
             "balance p50 / p99 (ms) | balance/s | errors |", "|---|---|---|---|---|---|---|---|"]
    for lv in levels:
        o, cl, b = lv["open"], lv["close"], lv["balance"]
        table.append(f"| {lv['concurrency']} | {o['p50_ms']} / {o['p99_ms']} | {o['per_s']:,.0f} | "
                     f"{cl['p50_ms']} / {cl['p99_ms']} | {cl['per_s']:,.0f} | {b['p50_ms']} / {b['p99_ms']} | "
                     f"{b['per_s']:,.0f} | {o['errors'] + cl['errors'] + b['errors']} |")
    print("\n".join(table))
    print(f"cold-start import of opex_api.handler: {cold['median_ms']} ms (median of {len(cold['runs_ms'])}); "
          f"with the first invocation: {cold['first_response_median_ms']} ms")
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "api_workers": args.workers,
        # the machine's load average (1, 5, 15 min) before and after: other
        # processes on the same cores lower every figure
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "users": USERS,
        "seconds_per_level": seconds,
        "user_setup_seconds": round(users_s, 1),
        "levels": levels,
        "errors_total": errors,
        "cold_start_import": cold,
        "table_md": "\n".join(table),
        "summary": [
            {"figure": "API opens/s at concurrency 64 (with as many closes)", "value": f"{top['open']['per_s']:,.0f}",
             "target": f"≥ {TARGETS['opens_per_s_64']:,}"},
            {"figure": "API POST /trade/open p50 / p99 at concurrency 64",
             "value": f"{top['open']['p50_ms']} ms / {top['open']['p99_ms']} ms",
             "target": f"p99 < {TARGETS['open_p99_ms']} ms"},
            {"figure": "API GET /balance p50 / p99 at concurrency 64, requests/s",
             "value": f"{top['balance']['p50_ms']} ms / {top['balance']['p99_ms']} ms, "
                      f"{top['balance']['per_s']:,.0f}/s", "target": ""},
            {"figure": "API errors over all levels", "value": str(errors), "target": "0"},
            {"figure": "API worker CPU per request at concurrency 64: open or close / GET /balance",
             "value": f"{top['cpu']['api_cpu_ms_per_req']} ms / {top['balance_cpu']['api_cpu_ms_per_req']} ms",
             "target": ""},
            {"figure": "Lambda cold start: import of opex_api.handler / + first invocation",
             "value": f"{cold['median_ms']} ms / {cold['first_response_median_ms']} ms", "target": ""},
        ],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
