"""The pure, deterministic engine core.

Its modules are plain typed Python. When a mypyc build of exactly these
sources is present (``engine_container/build_native.py``, run by ``make
setup`` and the engine image build), they load compiled instead; see
``opex_common/native.py``. ``NATIVE`` says which one this process runs.
"""

from opex_common.native import activate as _activate

NATIVE = _activate(__name__, __path__)
