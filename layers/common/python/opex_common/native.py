"""Load the mypyc-compiled build of the engine's hot modules when it matches.

The engine core (``opex_engine.core``) and the formulas it calls on every
command (``opex_common.units``, ``opex_common.margin``) are plain typed Python.
``engine_container/build_native.py`` compiles them together, as one mypyc
group, into a ``.native`` directory (``make setup`` and the engine image do
this); calls between them then stay in C. When a ``.native`` directory built
from exactly the sources present here is found (``OPEX_NATIVE_DIR``, else a
``.native`` beside any ``sys.path`` entry), each of the two packages puts its
compiled directory first on its ``__path__``, so its modules load from there.
Anything else runs the sources: no build (the Lambda functions, a fresh
checkout), a build from other sources (with a warning), or
``OPEX_ENGINE_PURE=1``. Either way the results are identical; the tests run
both (tests/engine/test_native.py).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
import sysconfig
from pathlib import Path

# package -> its compiled modules (one group: they call each other natively)
GROUP: dict[str, tuple[str, ...]] = {
    "opex_common": ("units", "margin", "messages"),
    "opex_engine.core": ("validation", "triggers", "state", "orders", "engine"),
}
_COMMON_DIR = Path(__file__).resolve().parent


def pure_requested() -> bool:
    raw = os.environ.get("OPEX_ENGINE_PURE", "")
    if raw not in ("", "0", "1"):
        raise ValueError(f"OPEX_ENGINE_PURE must be 0 or 1, not {raw!r}")
    return raw == "1"


def package_dir(package: str) -> Path | None:
    """Where the sources of ``package`` are, found without importing it."""
    if package == "opex_common":
        return _COMMON_DIR
    rel = Path(*package.split("."))
    for entry in sys.path:
        d = Path(entry or ".") / rel
        if (d / "__init__.py").is_file():
            return d.resolve()
    return None


def source_files() -> list[tuple[str, Path]] | None:
    """(module name, source path) of every module of the group; None if one is missing."""
    out: list[tuple[str, Path]] = []
    for package, modules in GROUP.items():
        d = package_dir(package)
        if d is None:
            return None
        for name in modules:
            path = d / f"{name}.py"
            if not path.is_file():
                return None
            out.append((f"{package}.{name}", path))
    return out


def source_hash(files: list[tuple[str, Path]]) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(sys.implementation.cache_tag.encode())
    for module, path in files:
        h.update(module.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _candidates() -> list[Path]:
    env = os.environ.get("OPEX_NATIVE_DIR")
    if env:
        return [Path(env)]
    return [Path(entry or ".") / ".native" for entry in sys.path]


@functools.cache
def native_root() -> Path | None:
    """The usable compiled build, or None (then the sources run)."""
    if pure_requested():
        return None
    root = next((c for c in _candidates() if (c / "SOURCE_HASH").is_file()), None)
    if root is None:
        if os.environ.get("OPEX_NATIVE_DIR"):
            logging.getLogger("opex_common.native").warning(
                "OPEX_NATIVE_DIR=%s holds no native build (no SOURCE_HASH); running the Python sources",
                os.environ["OPEX_NATIVE_DIR"])
        return None
    files = source_files()
    recorded = (root / "SOURCE_HASH").read_text().strip()
    if files is None or recorded != source_hash(files):
        logging.getLogger("opex_common.native").warning(
            "the compiled engine modules in %s were built from other sources; running the Python sources "
            "(rebuild: python engine_container/build_native.py)", root)
        return None
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for package, modules in GROUP.items():
        compiled = root / Path(*package.split("."))
        if not all((compiled / f"{name}{suffix}").is_file() for name in modules):
            return None
    sys.path.append(str(root))  # mypyc's shared runtime of the group is a top-level module
    return root


def activate(package: str, path: list[str]) -> bool:
    """Called by ``package``'s ``__init__``: prefer its compiled modules."""
    root = native_root()
    if root is None:
        return False
    path.insert(0, str(root / Path(*package.split("."))))
    return True
