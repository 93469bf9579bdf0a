"""Mag names: ``"2"`` for the isotropic factor 2-2-2, ``"2-2-1"`` otherwise (webKnossos folder names,
KNOSSOS and CLI spelling). One parser and one formatter for every format and command."""

from __future__ import annotations

import re

import numpy as np

__all__ = ["mag_name", "parse_mag"]

_INT_PART = r"\d+"
_FLOAT_PART = r"(?:\d+(?:\.\d*)?|\.\d+)"


def mag_name(factor) -> str:
    """``"2"`` for 2-2-2 (or the number 2), ``"2-2-1"`` otherwise; whole factors without ``.0``."""
    values = [int(v) if float(v).is_integer() else float(v) for v in np.broadcast_to(np.asarray(factor), 3)]
    return str(values[0]) if len(set(values)) == 1 else "-".join(str(v) for v in values)


def parse_mag(value, where: str = "mag", *, integer: bool = True, commas: bool = False) -> tuple:
    """The factor ``(x, y, z)`` of a mag given as a name (``"2"``, ``"2-2-1"``; also ``"2,2,1"`` with
    ``commas``), a number or three numbers. ``integer``: whole factors >= 1 (ints), else positive
    numbers (floats). ValueError starting with ``where`` (the file and key, or the option, it came from)."""
    kind = "a mag like 2 or 2-2-1" + (" (or 2,2,1)" if commas else "")
    if isinstance(value, str):
        part = _INT_PART if integer else _FLOAT_PART
        sep = "[-,]" if commas else "-"
        text = value.strip()
        if not re.fullmatch(rf"{part}(?:{sep}{part}{sep}{part})?", text):
            raise ValueError(f"{where}: expected {kind}, got {value!r}")
        numbers = [float(p) for p in re.split(sep, text)] * (1 if re.search(sep, text) else 3)
    else:
        try:
            numbers = [float(v) for v in np.broadcast_to(np.asarray(value, dtype=np.float64), 3)]
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected {kind}, got {value!r}") from None
    if not all(np.isfinite(numbers)) or (integer and not all(v.is_integer() for v in numbers)):
        raise ValueError(f"{where}: mag factors must be {'whole' if integer else 'finite'} numbers, got {value!r}")
    if min(numbers) < 1 if integer else min(numbers) <= 0:
        raise ValueError(f"{where}: mag factors must be {'>= 1' if integer else 'positive'}, got {value!r}")
    return tuple(int(v) for v in numbers) if integer else tuple(numbers)
