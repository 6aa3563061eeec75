"""Payload-level unit conversion between SI-prefixed forms of one unit (W/kW/MW, Wh/kWh, V/kV...)."""

from __future__ import annotations

_PREFIX = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
_BASES = ("Wh", "varh", "VAh", "W", "var", "VA", "V", "A", "Hz")


def _split(unit: str) -> tuple[float, str] | None:
    for base in _BASES:
        if unit.endswith(base):
            prefix = unit[: -len(base)]
            if prefix in _PREFIX:
                return _PREFIX[prefix], base
    return None


def unit_factor(src: str, dst: str) -> float:
    """The factor converting a value in `src` into `dst` (1.0 when equal).

    Raises ValueError when the units are not prefixed forms of the same base unit.
    """
    if src == dst:
        return 1.0
    a, b = _split(src), _split(dst)
    if a is None or b is None or a[1] != b[1]:
        raise ValueError(f"cannot convert {src!r} to {dst!r}")
    return a[0] / b[0]
