"""Local services the stack starts for itself: the embedded Mongo-wire server.

Redis and Postgres come from the environment (REDIS_URL, DATABASE_URL). When no
MONGO_URL is given, ``nx-27017`` (a MongoDB wire-protocol server over SQLite,
from PyPI) is started on a free port with its own data directory; pymongo
talks to it unchanged.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pymongo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MongoWireServer:
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_mongo_wire(data_dir: Path, port: int | None = None, timeout_s: float = 20.0) -> MongoWireServer:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    pid_file = data_dir / "nx-27017.pid"
    if pid_file.exists():
        # nx-27017 refuses to start while its pid file exists, even when that
        # process is long gone (an earlier stack killed hard): clear it if stale
        try:
            os.kill(int(pid_file.read_text().strip() or 0), 0)
        except (ValueError, ProcessLookupError, PermissionError):
            pid_file.unlink(missing_ok=True)
    exe = Path(sys.executable).with_name("nx-27017")
    cmd = [str(exe) if exe.exists() else "nx-27017", "--data-dir", str(data_dir), "--host", "127.0.0.1",
           "-p", str(port), "--log-file", str(data_dir / "nx-27017.log"),
           "--pid-file", str(data_dir / "nx-27017.pid")]
    log = open(data_dir / "stdout.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    server = MongoWireServer(proc, port, data_dir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nx-27017 exited with {proc.returncode}; see {data_dir / 'stdout.log'}")
        try:
            client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
                server.url, serverSelectionTimeoutMS=300)
            client.admin.command("ping")
            client.close()
            return server
        except pymongo.errors.PyMongoError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"nx-27017 did not answer on port {port} within {timeout_s}s")
