"""The context parser and the Docker-free layer bundling."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import App

from infra.config import ConfigError, OpexConfig
from infra.layer_bundling import LAMBDA_PYTHON, PIP_PLATFORMS, PipLayerBundling, pip_command

pytestmark = pytest.mark.unit


def test_context_strings_from_the_command_line_are_parsed() -> None:
    app = App(context={"opex:engine_shards": "4", "opex:bundle": "false", "opex:architecture": "x86_64"})
    cfg = OpexConfig.from_context(app)
    assert cfg.engine_shards == 4 and cfg.bundle is False and cfg.architecture == "x86_64"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("engine_shards", "0", "between 1 and 64"),
    ("engine_shards", "two", "not an integer"),
    ("bundle", "maybe", "not a boolean"),
    ("architecture", "riscv", "does not match"),
    ("domain_name", "trade.example.com", "go together"),
    ("nat_gateways", "3", "cannot exceed"),
])
def test_bad_context_stops_synth_with_the_key_named(key: str, value: str, message: str) -> None:
    app = App(context={f"opex:{key}": value})
    with pytest.raises(ConfigError, match=message):
        OpexConfig.from_context(app)


def test_defaults_match_cdk_json() -> None:
    import json

    root = Path(__file__).resolve().parents[2]
    context = json.loads((root / "cdk.json").read_text())["context"]
    cfg = OpexConfig.from_context(App(context=context))
    defaults = OpexConfig()
    for name in ("engine_shards", "architecture", "redis_replicas", "key_prefix", "bundle", "price_source"):
        assert getattr(cfg, name) == getattr(defaults, name), name


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_pip_installs_wheels_for_the_lambda_platform(arch: str) -> None:
    cmd = pip_command(Path("requirements.txt"), Path("/out/python"), arch)
    platforms = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--platform"]
    assert platforms == list(PIP_PLATFORMS[arch])
    assert all(p.endswith("aarch64" if arch == "arm64" else "x86_64") for p in platforms)
    assert cmd[cmd.index("--python-version") + 1] == LAMBDA_PYTHON == "3.12"
    assert "--only-binary=:all:" in cmd and cmd[cmd.index("--target") + 1] == "/out/python"


def test_local_bundling_builds_the_layer_shape_without_docker(tmp_path: Path) -> None:
    # an empty requirements file: pip runs for real but downloads nothing
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("")
    root = Path(__file__).resolve().parents[2]
    bundling = PipLayerBundling(root / "layers" / "common", requirements, "arm64")
    out = tmp_path / "out"
    out.mkdir()
    assert bundling.try_bundle(str(out), image=None) is True
    assert (out / "python" / "opex_common" / "settings.py").exists()
    assert not list(out.rglob("__pycache__"))
