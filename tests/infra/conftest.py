"""Synthesize the CDK app once per session, the way `cdk synth` does.

The App gets cdk.json's context (feature flags and opex:* settings), so the
template under test is the one that deploys, with three test-only overrides:
``opex:bundle=false`` (no pip download of the layer's wheels), a placeholder
SPA build (frontend/dist may not exist) and an output folder of its own. The
AwsSolutions cdk-nag pack runs as a CDK validation plugin during synthesis.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    # registered in pyproject.toml too; repeated here so tests/infra runs on its own
    for marker in (
        "unit: pure tests, no network (sockets disabled)",
        "integration: talk to the real Redis / Postgres / Mongo-wire server",
        "e2e: the whole local stack",
        "slow: long-running",
    ):
        config.addinivalue_line("markers", marker)


def cdk_json_context() -> dict[str, Any]:
    return dict(json.loads((ROOT / "cdk.json").read_text())["context"])


@dataclass
class Synth:
    outdir: Path
    stacks: Any
    error: str | None
    acknowledgements: list[tuple[str, str, str]]
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)

    def template(self, stack: str) -> dict[str, Any]:
        return self.templates[f"{self.stacks.cfg.name}-{stack}"]

    def assertions(self, stack: str):  # type: ignore[no-untyped-def]
        from aws_cdk.assertions import Template

        return Template.from_json(self.template(stack))

    def resources(self, stack: str, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template(stack)["Resources"].items() if v["Type"] == type_}

    def assets(self, stack: str) -> dict[str, Any]:
        return json.loads((self.outdir / f"{self.stacks.cfg.name}-{stack}.assets.json").read_text())

    def validation_report(self) -> dict[str, Any] | None:
        path = self.outdir / "validation-report.json"
        return json.loads(path.read_text()) if path.exists() else None


def synthesize(outdir: Path, spa_dir: Path | None, **overrides: Any) -> Synth:
    from aws_cdk import App

    from infra import util
    from infra.opex_app import build

    context = cdk_json_context()
    context["opex:bundle"] = False
    if spa_dir is not None:
        context["opex:spa_dir"] = str(spa_dir)
    context.update({f"opex:{k}": v for k, v in overrides.items()})
    util.ACKNOWLEDGEMENTS.clear()
    app = App(context=context, outdir=str(outdir))
    stacks = build(app)
    error = None
    try:
        app.synth()
    except RuntimeError as exc:  # cdk-nag findings fail validation; templates are still written
        error = str(exc)
    synth = Synth(outdir, stacks, error, list(util.ACKNOWLEDGEMENTS))
    for stack in stacks.all():
        path = outdir / f"{stack.stack_name}.template.json"
        synth.templates[stack.stack_name] = json.loads(path.read_text())
    return synth


@pytest.fixture(scope="session")
def placeholder_spa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("spa-dist")
    (dist / "index.html").write_text("<!doctype html><title>Opex</title><div id=app></div>")
    (dist / "assets").mkdir()
    (dist / "assets" / "app.js").write_text("console.log('opex')")
    return dist


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory, placeholder_spa: Path) -> Synth:
    """The app as cdk.json configures it (1 shard, Multi-AZ Redis, arm64)."""
    return synthesize(tmp_path_factory.mktemp("cdk.out"), placeholder_spa)


@pytest.fixture(scope="session")
def synth_variant(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """3 shards, one Redis node, x86_64, a custom domain, and no SPA build."""
    return synthesize(
        tmp_path_factory.mktemp("cdk.out-variant"),
        ROOT / "no-such-dist",
        name="opexdemo",
        engine_shards="3",
        redis_replicas="0",
        architecture="x86_64",
        domain_name="trade.example.com",
        certificate_arn="arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-3333-4444-555555555555",
        alarm_email="ops@example.com",
    )


@pytest.fixture(scope="session")
def synth_unacknowledged(tmp_path_factory: pytest.TempPathFactory, placeholder_spa: Path) -> Synth:
    """The default app with every acknowledgement switched off: what cdk-nag finds on its own."""
    from infra import util

    class _Silent:
        @staticmethod
        def of(_scope: Any) -> Any:
            return _Silent()

        def acknowledge(self, *_rules: Any) -> None:
            pass

    real = util.Validations
    util.Validations = _Silent  # type: ignore[assignment]
    try:
        return synthesize(tmp_path_factory.mktemp("cdk.out-unacknowledged"), placeholder_spa)
    finally:
        util.Validations = real  # type: ignore[assignment]
