"""Validation of command fields: what every engine command checks before it
changes anything. A failed check raises :class:`CommandError`, which ``apply``
turns into the command's error reply."""

from __future__ import annotations

from typing import Any

from opex_common import messages as m

MAX_PRICE = 10**13  # $1e9 in price units: anything above is a typo or an attack
MAX_QTY = 10**15  # 1e7 base units: 15 significant digits, exact as a JSON number


class CommandError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(msg: str) -> CommandError:
    return CommandError(m.INVALID, msg)


def _int_field(msg: dict[str, Any], key: str, lo: int, hi: int, *, optional: bool = False) -> Any:
    v = msg.get(key)
    if v is None and optional:
        return None
    if type(v) is not int or not lo <= v <= hi:
        raise _invalid(f"{key} must be an integer from {lo} to {hi}")
    return v


def _str_field(msg: dict[str, Any], key: str, max_len: int = 128) -> str:
    v = msg.get(key)
    if type(v) is not str or not 0 < len(v) <= max_len:
        raise _invalid(f"{key} must be a non-empty string of at most {max_len} characters")
    return v
