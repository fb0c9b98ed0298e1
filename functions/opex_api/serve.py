"""Serve the API with uvicorn on N worker processes that share the load evenly.

    python -m opex_api.serve --host 127.0.0.1 --port 8000 --workers 2

``uvicorn --workers N`` binds one listening socket and every worker accepts
from it. uvloop (libuv) accepts every pending connection in one go when it
wakes up, so the first worker to wake takes most of a burst of new
keep-alive connections and keeps them: measured with 64 clients and 2
workers, 49 / 15 and 58 / 6 connections. One worker then saturates its core
while the other idles, and the queue in the busy one is the latency tail.

Here each worker binds its own socket on the same port with ``SO_REUSEPORT``,
so the kernel spreads new connections across the workers (by a hash of the
connection's addresses). The uvicorn settings are the local stack's: the app
``opex_api.app:app``, httptools, uvloop, no access log, no proxy headers
(``X-Forwarded-For`` is not trusted).

The parent process only supervises: SIGTERM / SIGINT go to every worker; if a
worker dies, the others are stopped and the parent exits with its code (the
stack then stops, as for any of its processes). A worker whose parent dies
stops too (Linux: ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

from opex_common.signals import StopFlag

APP = "opex_api.app:app"


def uvicorn_config_kwargs(log_level: str, backlog: int) -> dict[str, object]:
    """The uvicorn settings every worker runs with (uvicorn[standard] provides httptools and uvloop)."""
    return {"http": "httptools", "loop": "uvloop", "access_log": False, "proxy_headers": False,
            "log_level": log_level, "backlog": backlog, "lifespan": "on"}


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def run_worker(host: str, port: int, log_level: str, backlog: int) -> None:
    import uvicorn

    from .serving import coalesce_response_writes

    coalesce_response_writes()
    sock = listening_socket(host, port, backlog)
    config = uvicorn.Config(APP, host=host, port=port, **uvicorn_config_kwargs(log_level, backlog))  # type: ignore[arg-type]
    uvicorn.Server(config).run(sockets=[sock])


def supervise(argv: list[str], workers: int) -> int:
    procs = [subprocess.Popen(argv) for _ in range(workers)]
    stopping = StopFlag()
    code = 0
    try:
        while not stopping:
            for proc in procs:
                rc = proc.poll()
                if rc is not None:
                    print(f"opex_api.serve: worker {proc.pid} exited with {rc}; stopping", file=sys.stderr, flush=True)
                    stopping.set()
                    code = rc or 1
                    break
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    return code


def main(args_in: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opex_api.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("API_WORKERS", "2")))
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--backlog", type=int, default=2048)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(args_in)
    if args.port == 0 and args.workers > 1:
        parser.error("--port 0 needs --workers 1 (each worker would get its own port)")
    if args.worker:
        _die_with_parent()
        run_worker(args.host, args.port, args.log_level, args.backlog)
        return 0
    if args.workers <= 1:
        run_worker(args.host, args.port, args.log_level, args.backlog)
        return 0
    worker_argv = [sys.executable, "-m", "opex_api.serve", "--worker", "--host", args.host, "--port", str(args.port),
                   "--log-level", args.log_level, "--backlog", str(args.backlog)]
    return supervise(worker_argv, args.workers)


if __name__ == "__main__":
    sys.exit(main())
