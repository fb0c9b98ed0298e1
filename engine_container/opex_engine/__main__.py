"""Operator CLI of the engine container: ``python -m opex_engine <command>``.

  engine --shard N     run one engine shard
  poller               run the price poller (Backpack feed / simulator, candles)
  pusher               run the WebSocket pusher
  history              run the history writer (events -> Postgres)
  health [--shard N]   exit 0 if the shard's heartbeat is fresh (container health check)
  reset-user USER_ID   close a user's trades at the mark and restore the starting balance
  status               print every shard's status
  check [--timeout S]  invariant checker: ledger rebuilds every balance; conservation; no negatives
  stack [--api-port P] [--ws-port P]   run the whole platform locally (make run)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from importlib import import_module

import orjson
import redis as redis_lib

from opex_common.logs import setup_logging
from opex_common.settings import get_settings


def _entry(path: str) -> Callable[[], None]:
    module, _, func = path.partition(":")
    return getattr(import_module(module), func)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["stack"]:
        from .stack import main as stack_main

        return stack_main(argv[1:])
    parser = argparse.ArgumentParser(prog="opex_engine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_engine = sub.add_parser("engine", help="run one engine shard")
    p_engine.add_argument("--shard", type=int, default=0)
    sub.add_parser("poller", help="run the price poller")
    sub.add_parser("pusher", help="run the WebSocket pusher")
    sub.add_parser("history", help="run the history writer")
    p_health = sub.add_parser("health", help="exit 0 when the shard's heartbeat is fresh")
    p_health.add_argument("--shard", type=int, default=0)
    p_health.add_argument("--max-age-s", type=float, default=15.0)
    p_reset = sub.add_parser("reset-user", help="close a user's trades and restore the starting balance")
    p_reset.add_argument("user_id")
    sub.add_parser("status", help="print every shard's status")
    p_check = sub.add_parser("check", help="rebuild balances from the ledger and compare with the engine")
    p_check.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    settings = get_settings()
    if args.cmd == "engine":
        setup_logging(f"opex-engine-{args.shard}")
        from .runtime import run_engine

        run_engine(settings, args.shard)
        return 0
    if args.cmd == "poller":
        _entry("opex_engine.prices.poller:main_poller")()
        return 0
    if args.cmd == "pusher":
        _entry("opex_engine.pusher.pusher:main_pusher")()
        return 0
    if args.cmd == "history":
        _entry("opex_engine.history.writer:main_history")()
        return 0
    if args.cmd == "check":
        from .checker import main as check_main

        return check_main(settings, args.timeout)
    client = redis_lib.Redis.from_url(settings.redis_url, socket_timeout=5)
    if args.cmd == "health":
        raw = client.get(settings.keys.engine_status(args.shard))
        if not raw:
            print("no heartbeat", file=sys.stderr)
            return 1
        status = orjson.loads(raw)
        age = time.time() - status["ts"] / 1000
        ok = status["state"] in ("ready", "replaying") and age <= args.max_age_s
        print(f"shard {args.shard}: {status['state']}, heartbeat {age:.1f}s ago")
        return 0 if ok else 1
    if args.cmd == "status":
        for shard in range(settings.engine_shards):
            raw = client.get(settings.keys.engine_status(shard))
            text = raw.decode() if isinstance(raw, bytes) else raw
            print(f"shard {shard}: {text or 'no heartbeat'}")
        return 0
    if args.cmd == "reset-user":
        from opex_common.engine_client import EngineClient

        async def reset() -> dict[str, object]:
            import redis.asyncio as aioredis

            r = aioredis.Redis.from_url(settings.redis_url)
            try:
                ec = EngineClient(r, settings.keys, settings.engine_shards, settings.reply_timeout_s)
                return await ec.call({"type": "reset_account", "user_id": args.user_id})
            finally:
                await r.aclose()

        rep = asyncio.run(reset())
        print(orjson.dumps(rep, option=orjson.OPT_INDENT_2).decode())
        return 0 if rep.get("ok") else 1
    parser.error(f"unknown command {args.cmd}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
