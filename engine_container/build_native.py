"""Compile the engine core and the formulas it calls with mypyc.

The modules of ``opex_common.native.GROUP`` (opex_engine.core and
opex_common.units/margin) are plain, fully typed Python; mypyc turns their
classes into native structs, their integer arithmetic into C and the calls
between them into C calls (docs/engine.md, "Native core"). The sources stay the
reference: nothing else changes, and everything falls back to them whenever
the compiled modules are missing, were built from other sources, or
``OPEX_ENGINE_PURE=1`` is set.

Output: ``engine_container/.native/`` (ignored by git; found because
engine_container is on sys.path)
  opex_common/<module>.cpython-*.so, opex_engine/core/<module>.cpython-*.so
  <group>__mypyc.cpython-*.so      mypyc's shared runtime for them
  SOURCE_HASH                      hash of the sources they came from

Usage: python engine_container/build_native.py [--force] [--out DIR]
Skips the build when DIR already holds modules built from the current sources.
Needs a C compiler and mypy (requirements-dev.txt); ``make setup`` runs it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMON = HERE.parent / "layers" / "common" / "python"
sys.path[:0] = [str(HERE), str(COMMON)]
os.environ["OPEX_ENGINE_PURE"] = "1"  # this script only needs the paths and the hash

from opex_common.native import GROUP, source_files, source_hash  # noqa: E402


def build(out: Path, force: bool = False) -> bool:
    """Build into ``out``; returns False when it was already up to date."""
    files = source_files()
    assert files is not None, "sources of the native group not found"
    digest = source_hash(files)
    stamp = out / "SOURCE_HASH"
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    wanted = [out / Path(*module.split(".")).with_suffix(suffix) for module, _ in files]
    if not force and stamp.is_file() and stamp.read_text().strip() == digest and all(p.is_file() for p in wanted):
        print(f"native engine modules up to date ({out})")
        return False
    with tempfile.TemporaryDirectory(prefix="opex-native-") as tmp:
        src = Path(tmp)
        # whole packages (mypy follows their imports), compiled: only the group
        shutil.copytree(COMMON / "opex_common", src / "opex_common",
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        (src / "opex_engine").mkdir()
        (src / "opex_engine" / "__init__.py").write_text("")
        shutil.copytree(HERE / "opex_engine" / "core", src / "opex_engine" / "core",
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        targets = [str(Path(*module.split(".")).with_suffix(".py")) for module, _ in files]
        (src / "setup_native.py").write_text(
            "from setuptools import setup\n"
            "from mypyc.build import mypycify\n"
            "setup(name='opex-engine-native', packages=[], py_modules=[],\n"
            f"      ext_modules=mypycify({targets!r}, opt_level='3'))\n")
        proc = subprocess.run([sys.executable, "setup_native.py", "build_ext", "--inplace"], cwd=src,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise SystemExit(f"mypyc build failed (exit {proc.returncode}); the engine runs the Python sources")
        built = sorted(p for p in src.rglob(f"*{suffix}") if "build" not in p.relative_to(src).parts)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for so in built:
            dest = out / so.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(so, dest)
        stamp.write_text(digest + "\n")
    print(f"native engine modules built: {len(built)} extensions for {', '.join(GROUP)} in {out}")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(HERE / ".native"))
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    build(Path(args.out), args.force)


if __name__ == "__main__":
    main()
