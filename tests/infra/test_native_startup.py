"""The container's start-up commands (infra/processes.py, used by ECS and
docker compose), run natively against the real Redis, Postgres and the
Mongo-wire server: each starts, the engine's health command turns healthy, and
SIGTERM stops each one cleanly within its stop timeout (the engine snapshots).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra import processes
from opex_common.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def process_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is not None:
            env[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    env["PYTHONPATH"] = os.pathsep.join(
        str(ROOT / p) for p in ("layers/common/python", "engine_container", "functions")
    )
    return env


def start(proc: processes.Process, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable if a == "python" and i == 0 else a for i, a in enumerate(proc.command)]
    return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def stop(child: subprocess.Popen[bytes], proc: processes.Process) -> int:
    child.send_signal(signal.SIGTERM)
    try:
        return child.wait(proc.stop_timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        pytest.fail(f"{proc.name} ignored SIGTERM for {proc.stop_timeout_s}s")


def test_migrate_command_applies_the_schema(settings: Settings, tmp_path: Path) -> None:
    log = tmp_path / "migrate.log"
    child = start(processes.MIGRATE, process_env(settings), log)
    assert child.wait(60) == 0, log.read_text()


def test_engine_command_turns_healthy_and_stops_on_sigterm(settings: Settings, redis, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = processes.engine(0)
    env = process_env(settings)
    log = tmp_path / "engine.log"
    child = start(proc, env, log)
    try:
        deadline = time.monotonic() + 60
        healthy = False
        while time.monotonic() < deadline and child.poll() is None:
            check = subprocess.run(
                [sys.executable, *proc.health_command[1:]], env=env, cwd=ROOT, capture_output=True, timeout=30
            )
            if check.returncode == 0:
                healthy = True
                break
            time.sleep(0.5)
        assert healthy, f"health never passed; engine log:\n{log.read_text()[-2000:]}"
    finally:
        code = stop(child, proc)
    assert code == 0, log.read_text()[-2000:]


@pytest.mark.parametrize("proc", processes.WORKERS, ids=lambda p: p.name)
def test_worker_commands_start_and_stop_on_sigterm(
    proc: processes.Process, settings: Settings, redis, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    log = tmp_path / f"{proc.name}.log"
    child = start(proc, process_env(settings), log)
    time.sleep(4)
    if child.poll() is not None:
        out = log.read_text()
        if "ModuleNotFoundError" in out and "opex_engine." in out:
            pytest.skip(f"{proc.name}: not written yet ({out.strip().splitlines()[-1]})")
        pytest.fail(f"{proc.name} exited with {child.returncode}:\n{out[-2000:]}")
    code = stop(child, proc)
    assert code == 0, log.read_text()[-2000:]
