"""The engine image and docker-compose.yml, checked without a Docker engine.

hadolint lints the Dockerfile; the Dockerfile and compose file are parsed and
their references checked against the repository (COPY sources, .dockerignore,
build targets, commands, settings); the start-up commands are checked against
the real CLI (``--help`` of each, natively).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra import processes
from opex_common.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "engine_container" / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
SETTINGS_ENV = {name.upper() for name in Settings.model_fields}
# an exact release (postgres numbers its releases major.minor), never "latest" or a bare major
PINNED_TAG = re.compile(r"^[a-z0-9./-]+:\d+\.\d+(\.\d+)?(-[a-z0-9.-]+)?(@sha256:[0-9a-f]{64})?$")


# ---------------------------------------------------------------------------- Dockerfile
def instructions() -> list[tuple[str, str]]:
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            word, _, rest = current.strip().partition(" ")
            lines.append((word.upper(), rest.strip()))
            current = ""
    return lines


def stages() -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    name = None
    for word, rest in instructions():
        if word == "FROM":
            name = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
            out[name] = []
        elif name is not None:
            out[name].append((word, rest))
    return out


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint not installed: pip install -r infra/requirements.txt")
    proc = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_image_is_pinned_by_version_and_digest() -> None:
    arg = next(rest for word, rest in instructions() if word == "ARG" and rest.startswith("PYTHON_IMAGE="))
    image = arg.split("=", 1)[1]
    assert PINNED_TAG.match(image) and "@sha256:" in image, image
    for word, rest in instructions():
        if word == "FROM":
            base = rest.split(" AS ")[0].strip()
            assert base == "${PYTHON_IMAGE}" or base in stages(), base


def test_final_stage_runs_as_non_root_with_the_cli_entrypoint() -> None:
    all_stages = stages()
    assert list(all_stages)[-1] == "engine", "the default build target is the ECS image"

    def effective(stage: str, word: str) -> str | None:
        found = None
        chain = []
        while stage in all_stages:
            chain.append(stage)
            base = next(r for w, r in instructions() if w == "FROM" and r.endswith(f" AS {stage}")).split(" AS ")[0]
            stage = base.strip()
        for s in reversed(chain):
            for w, r in all_stages[s]:
                if w == word:
                    found = r
        return found

    user = effective("engine", "USER")
    assert user is not None and user.split(":")[0] not in ("0", "root"), user
    assert effective("engine", "ENTRYPOINT") == '["python", "-m", "opex_engine"]'
    assert effective("engine", "CMD") == '["engine", "--shard", "0"]'
    assert effective("engine", "STOPSIGNAL") == "SIGTERM"
    assert (ROOT / "engine_container" / "opex_engine" / "__main__.py").exists()


def dockerignore_allows(rel: str) -> bool:
    allowed = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!")
        if fnmatch.fnmatch(rel, pattern) or rel.startswith(pattern.rstrip("/") + "/") or rel == pattern:
            allowed = negate
    return allowed


def test_every_copy_source_exists_and_is_in_the_build_context() -> None:
    copies = [rest for word, rest in instructions() if word == "COPY" and "--from=" not in rest]
    assert copies
    for rest in copies:
        source = rest.split()[0]
        assert (ROOT / source).exists(), f"COPY {source}: missing in the repository"
        assert dockerignore_allows(source), f"COPY {source}: excluded by .dockerignore"
    for leak in (".venv", ".git", "cdk.out", "tests", "frontend/node_modules"):
        assert not dockerignore_allows(leak), leak


@pytest.mark.parametrize("proc", processes.all_processes(2), ids=lambda p: p.name)
def test_start_up_commands_parse_with_the_real_cli(proc: processes.Process) -> None:
    """Each ECS/compose command, run natively with --help: the arguments are valid."""
    if proc.entrypoint != processes.ENTRYPOINT:
        compile(proc.args[0], "<migrate>", "exec")  # python -c CODE: valid Python
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        str(ROOT / p) for p in ("layers/common/python", "engine_container"))}
    for argv in (proc.args, proc.health_args):
        if argv is None:
            continue
        run = subprocess.run([sys.executable, "-m", "opex_engine", *argv, "--help"],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False)
        assert run.returncode == 0, f"{' '.join(argv)}: {run.stderr[-800:]}"


# ---------------------------------------------------------------------------- compose
@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_runs_real_pinned_redis_postgres_and_mongo(compose: dict) -> None:
    services = compose["services"]
    for name, image in (("redis", "redis:"), ("postgres", "postgres:"), ("mongo", "mongo:")):
        assert services[name]["image"].startswith(image)
        assert PINNED_TAG.match(services[name]["image"]), services[name]["image"]
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    assert "noeviction" in services["redis"]["command"]


def test_compose_builds_our_services_from_the_dockerfile_stages(compose: dict) -> None:
    targets = set(stages())
    ours = {n: s for n, s in compose["services"].items() if "build" in s}
    assert set(ours) == {"migrate", "engine-0", "poller", "history", "pusher", "ws-gateway", "api"}
    for name, svc in ours.items():
        assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]) == DOCKERFILE
        assert svc["build"]["target"] in targets, name
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]


def test_compose_commands_are_the_ecs_commands(compose: dict) -> None:
    services = compose["services"]
    for proc in [processes.engine(0), *processes.WORKERS, processes.MIGRATE]:
        svc = services[proc.name if proc.name != "engine-0" else "engine-0"]
        assert svc["command"] == list(proc.args), proc.name
        if proc.entrypoint != processes.ENTRYPOINT:
            assert svc["entrypoint"] == list(proc.entrypoint)
    health = services["engine-0"]["healthcheck"]["test"]
    assert health == ["CMD", *processes.engine(0).health_command]
    assert services["engine-0"]["stop_grace_period"] == f"{processes.engine(0).stop_timeout_s}s"


def test_compose_environment_names_are_settings(compose: dict) -> None:
    extra = {"WS_PUBLIC_URL"}
    services = compose["services"]
    hosts = set(services)
    for name, svc in services.items():
        if "build" not in svc:
            continue
        env = svc["environment"]
        unknown = set(env) - SETTINGS_ENV - extra
        assert not unknown, (name, unknown)
        for key in ("REDIS_URL", "DATABASE_URL", "MONGO_URL", "WS_CALLBACK_URL"):
            host = re.match(r"^[a-z+]+://(?:[^@/]*@)?([^:/?]+)", env[key]).group(1)
            assert host in hosts, (name, key, host)
        Settings(**{k.lower(): v for k, v in env.items() if k in SETTINGS_ENV and "${" not in v})


def test_compose_dependencies_exist_and_ports_stay_local(compose: dict) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, (name, dep)
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_compose_api_and_gateway_modules_exist(compose: dict) -> None:
    api = compose["services"]["api"]["entrypoint"][-1]  # python -m opex_api.serve
    gateway = compose["services"]["ws-gateway"]["entrypoint"][-1]
    missing = [m for m in (api, gateway) if not (ROOT / "functions" / (m.replace(".", "/") + ".py")).exists()]
    assert missing == [], f"compose runs modules that do not exist: {missing}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        str(ROOT / p) for p in ("layers/common/python", "engine_container", "functions"))}
    run = subprocess.run([sys.executable, "-m", api, *compose["services"]["api"]["command"], "--help"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert run.returncode == 0, run.stderr[-800:]
