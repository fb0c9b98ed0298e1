"""Code shared by the Lambda functions and the engine container."""

from .native import activate as _activate

# units and margin load compiled when a matching native build is present (native.py)
NATIVE = _activate(__name__, __path__)
