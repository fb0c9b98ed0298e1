"""Build the shared Lambda layer without Docker.

The layer zip holds ``python/``: the third-party wheels from requirements.txt,
installed by pip for the Lambda platform (``--platform manylinux_2_28_<arch>
--platform manylinux2014_<arch> --only-binary=:all:``, so nothing is compiled
and the host's OS and CPU do not matter), plus the ``opex_common`` package.

Why Python 3.12 on Lambda while the engine image and the tests run 3.11: the
python3.11 Lambda runtime is Amazon Linux 2 (glibc 2.26), and psycopg-binary
3.3 ships manylinux_2_28 wheels only (glibc 2.28+); python3.12 runs on Amazon
Linux 2023 (glibc 2.34). pip does not widen an explicit ``--platform`` to older
manylinux tags, hence both tags (orjson, for one, ships manylinux2014 wheels).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from .config import OpexConfig

LAMBDA_PYTHON = "3.12"
PIP_PLATFORMS = {
    "arm64": ("manylinux_2_28_aarch64", "manylinux2014_aarch64"),
    "x86_64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64"),
}


def pip_command(requirements: Path, target: Path, architecture: str) -> list[str]:
    return [
        sys.executable, "-m", "pip", "install",
        "--disable-pip-version-check", "--no-cache-dir", "--quiet",
        *[arg for platform in PIP_PLATFORMS[architecture] for arg in ("--platform", platform)],
        "--implementation", "cp",
        "--python-version", LAMBDA_PYTHON,
        "--only-binary=:all:",
        "--upgrade",
        "--target", str(target),
        "-r", str(requirements),
    ]


@jsii.implements(ILocalBundling)
class PipLayerBundling:
    """``ILocalBundling``: pip into ``<out>/python``, then copy ``opex_common``."""

    def __init__(self, source: Path, requirements: Path, architecture: str) -> None:
        self.source = source
        self.requirements = requirements
        self.architecture = architecture

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: object) -> bool:  # noqa: ARG002
        target = Path(output_dir) / "python"
        target.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            pip_command(self.requirements, target, self.architecture),
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            # Fail loudly: falling back to Docker bundling would only fail later
            # with a less useful message on the machines this is meant for.
            raise RuntimeError(f"layer bundling: pip install failed:\n{proc.stdout}\n{proc.stderr}")
        for package in sorted((self.source / "python").iterdir()):
            if package.is_dir() and (package / "__init__.py").exists():
                shutil.copytree(
                    package, target / package.name, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                )
        return True


def layer_code(cfg: OpexConfig) -> lambda_.Code:
    source = cfg.repo_root / "layers" / "common"
    requirements = cfg.repo_root / "requirements.txt"
    if not cfg.bundle:
        # The source folder already has the layer's shape (python/opex_common);
        # it lacks the third-party wheels, so it is for synth checks only.
        return lambda_.Code.from_asset(str(source), exclude=["**/__pycache__", "**/*.pyc"])
    return lambda_.Code.from_asset(
        str(source),
        exclude=["**/__pycache__", "**/*.pyc"],
        # hash the inputs (sources + requirements), so an unchanged layer is not re-uploaded
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=_input_hash(source, requirements, cfg.architecture),
        bundling=BundlingOptions(
            # Never pulled: local bundling always succeeds or raises.
            image=DockerImage.from_registry(f"public.ecr.aws/sam/build-python{LAMBDA_PYTHON}"),
            local=PipLayerBundling(source, requirements, cfg.architecture),
        ),
    )


def _input_hash(source: Path, requirements: Path, architecture: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    digest.update(architecture.encode())
    digest.update(requirements.read_bytes())
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            digest.update(str(path.relative_to(source)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
