"""The whole platform on one machine: ``python -m opex_engine stack``.

Starts, in order: the embedded Mongo-wire server (when MONGO_URL is empty),
the Postgres migrations, one engine process per shard, the price poller, the
history writer, the WebSocket pusher, the local WebSocket gateway (the same
ws handlers API Gateway would call) and the REST API under uvicorn (which also
serves the built SPA). Every child inherits one environment; Ctrl-C or SIGTERM
stops them in reverse order, the engines last so they snapshot.

Redis and Postgres come from REDIS_URL / DATABASE_URL (defaults: 127.0.0.1).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from opex_common.logs import setup_logging
from opex_common.migrations import migrate
from opex_common.settings import Settings
from opex_common.signals import StopFlag

from .localstack import MongoWireServer, start_mongo_wire

log = logging.getLogger("opex.stack")
ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = ROOT / ".local"


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    critical: bool = True


def _pythonpath() -> str:
    parts = [str(ROOT / p) for p in ("layers/common/python", "engine_container", "functions")]
    return os.pathsep.join(parts)


def _local_jwt_secret() -> str:
    path = STATE_DIR / "jwt_secret"
    if not path.exists():
        STATE_DIR.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def build_children(settings: Settings, api_port: int, ws_port: int) -> list[Child]:
    py = sys.executable
    children = [Child(f"engine-{i}", [py, "-m", "opex_engine", "engine", "--shard", str(i)])
                for i in range(settings.engine_shards)]
    children += [
        Child("poller", [py, "-m", "opex_engine", "poller"]),
        Child("history", [py, "-m", "opex_engine", "history"]),
        Child("pusher", [py, "-m", "opex_engine", "pusher"]),
        Child("ws-gateway", [py, "-m", "opex_ws.local_gateway", "--host", "127.0.0.1", "--port", str(ws_port)]),
        # uvicorn (httptools, uvloop, no access log, no proxy headers) on API_WORKERS processes, each
        # with its own SO_REUSEPORT socket so the kernel spreads connections evenly (opex_api/serve.py)
        Child("api", [py, "-m", "opex_api.serve", "--host", "127.0.0.1", "--port", str(api_port),
                      "--workers", os.environ.get("API_WORKERS", "2")]),
    ]
    return children


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="opex_engine stack", description=__doc__)
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("API_PORT", "8000")))
    parser.add_argument("--ws-port", type=int, default=int(os.environ.get("WS_PORT", "8001")))
    args = parser.parse_args(argv)
    setup_logging("opex-stack")

    env = dict(os.environ)
    env.setdefault("ENVIRONMENT", "local")
    env.setdefault("JWT_SECRET", _local_jwt_secret())
    env.setdefault("WS_CALLBACK_URL", f"http://127.0.0.1:{args.ws_port}")
    env.setdefault("WS_PUBLIC_URL", f"ws://127.0.0.1:{args.ws_port}")
    env.setdefault("FRONTEND_DIST", str(ROOT / "frontend" / "dist"))  # the API serves the built SPA at /
    env["PYTHONPATH"] = _pythonpath() + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    mongo: MongoWireServer | None = None
    if not env.get("MONGO_URL"):
        mongo = start_mongo_wire(STATE_DIR / "mongo", port=int(env.get("MONGO_PORT", "27017")))
        env["MONGO_URL"] = mongo.url
        log.info("embedded Mongo-wire server started", extra={"url": mongo.url})
    os.environ.update(env)
    settings = Settings()
    applied = migrate(settings.database_url)
    log.info("migrations applied", extra={"applied": applied})

    children = build_children(settings, args.api_port, args.ws_port)
    stopping = StopFlag()
    for child in children:
        child.proc = subprocess.Popen(child.argv, env=env, cwd=ROOT)
        log.info("started", extra={"proc": child.name, "pid": child.proc.pid})
    log.info("Opex is up", extra={"app": f"http://127.0.0.1:{args.api_port}",
                                   "api": f"http://127.0.0.1:{args.api_port}/api/v1",
                                   "websocket": f"ws://127.0.0.1:{args.ws_port}"})
    code = 0
    try:
        while not stopping:
            for child in children:
                assert child.proc is not None
                rc = child.proc.poll()
                if rc is not None:
                    log.error("process exited; stopping the stack", extra={"proc": child.name, "code": rc})
                    stopping.set()
                    code = 1
                    break
            time.sleep(0.5)
    finally:
        for child in reversed(children):
            if child.proc and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in reversed(children):
            if child.proc:
                try:
                    child.proc.wait(30)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
        if mongo:
            mongo.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
