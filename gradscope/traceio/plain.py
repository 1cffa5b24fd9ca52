"""Reading tensor summaries fast: a long run's trace file holds hundreds of thousands."""

from __future__ import annotations

from ..model import Node, TensorSummary
from .decode import MAX_INT, NONFINITE, numbers

_SUMMARY_KEYS = frozenset(("shape", "dtype", "device", "norm", "max_abs", "mean", "nan", "inf", "value",
                           "counts_exact"))
_STATS = ("norm", "max_abs", "mean")


def plain_summary(data: dict, ref: Node | None) -> TensorSummary | None:
    """The summary in `data` when it is in the plain form gradscope writes (checked here,
    field by field: a long run's file holds hundreds of thousands), else None for
    `read_summary`'s general reading, which says what is wrong."""
    if not data.keys() <= _SUMMARY_KEYS:
        return None
    shape = data["shape"] if "shape" in data else ref.shape if ref is not None else None
    dtype = data["dtype"] if "dtype" in data else ref.dtype if ref is not None else None
    device = data.get("device", ref.device if ref is not None and ref.device is not None else "cpu")
    if type(shape) is not list or type(dtype) is not str or type(device) is not str:
        return None
    for d in shape:
        if type(d) is not int or not -1 <= d <= MAX_INT:
            return None
    stats = []
    for f in _STATS:
        v = data.get(f)
        if v is not None and type(v) is not float:
            if type(v) is int and -MAX_INT <= v <= MAX_INT:
                pass
            elif type(v) is str and v in NONFINITE:
                v = NONFINITE[v]
            else:
                return None
        stats.append(v)
    nan, inf, exact = data.get("nan", 0), data.get("inf", 0), data.get("counts_exact", True)
    if type(nan) is not int or type(inf) is not int or not (0 <= nan <= MAX_INT and 0 <= inf <= MAX_INT) \
            or type(exact) is not bool:
        return None
    value = data.get("value")
    if value is not None:
        value = numbers(value, "value")
    return TensorSummary(list(shape), dtype, device, stats[0], stats[1], stats[2], nan, inf, value, exact)
