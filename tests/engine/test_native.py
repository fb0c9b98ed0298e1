"""The mypyc build of the engine behaves exactly like its Python sources.

Each seed runs the same random session (tests/engine/native_session.py) in a
process running the sources (OPEX_ENGINE_PURE=1) and in one running the
compiled build, and compares the digests of every reply, event and the final
state. ``make test`` builds the native modules first and sets
OPEX_REQUIRE_NATIVE=1, so there a missing build fails instead of skipping.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from opex_common import native

ROOT = Path(__file__).resolve().parents[2]
SESSION = Path(__file__).with_name("native_session.py")


def _session(seed: int, n: int, pure: bool) -> dict[str, object]:
    env = dict(os.environ, OPEX_ENGINE_PURE="1" if pure else "0")
    out = subprocess.run([sys.executable, str(SESSION), str(seed), str(n)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True)
    return orjson.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _native_available() -> None:
    if native.native_root() is None:
        if os.environ.get("OPEX_REQUIRE_NATIVE") == "1":
            pytest.fail("no native build matching the sources (python engine_container/build_native.py)")
        pytest.skip("no native build of the engine here (python engine_container/build_native.py)")


@pytest.mark.integration
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compiled_engine_matches_the_sources(seed: int) -> None:
    _native_available()
    pure = _session(seed, 4_000, pure=True)
    compiled = _session(seed, 4_000, pure=False)
    assert pure["native"] is False and compiled["native"] is True
    assert pure["problems"] == [] and compiled["problems"] == []
    assert pure["events"] > 1_000  # a session that did things
    assert compiled == {**pure, "native": True}


@pytest.mark.unit
def test_a_build_from_other_sources_is_not_used(tmp_path: Path) -> None:
    """A stale build (sources edited since) must never shadow the sources."""
    stale = tmp_path / ".native"
    stale.mkdir()
    (stale / "SOURCE_HASH").write_text("0" * 32 + "\n")
    env = dict(os.environ, OPEX_NATIVE_DIR=str(stale), OPEX_ENGINE_PURE="0")
    out = subprocess.run([sys.executable, "-c", "import opex_engine.core.engine as e, opex_engine.core as c;"
                          "print(c.NATIVE, e.__file__)"], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True)
    flag, path = out.stdout.split()
    assert flag == "False" and path.endswith("engine.py")
    assert "built from other sources" in out.stderr


@pytest.mark.unit
@pytest.mark.parametrize("env, says", [
    ({"OPEX_ENGINE_PURE": "yes"}, "OPEX_ENGINE_PURE must be 0 or 1"),
    ({"OPEX_NATIVE_DIR": "/nonexistent/opex-native"}, "OPEX_NATIVE_DIR=/nonexistent/opex-native holds no native build"),
])
def test_bad_native_settings_are_named(env: dict[str, str], says: str) -> None:
    """A garbage OPEX_ENGINE_PURE stops the process naming it; an OPEX_NATIVE_DIR
    without a build says so and the sources run."""
    out = subprocess.run([sys.executable, "-c", "import opex_engine.core as c; print(c.NATIVE)"],
                         env={**os.environ, "OPEX_ENGINE_PURE": "0", **env}, cwd=ROOT, capture_output=True,
                         text=True, check=False)
    assert says in out.stderr
    if "OPEX_ENGINE_PURE" in env:
        assert out.returncode != 0
    else:
        assert out.returncode == 0 and out.stdout.strip() == "False"
