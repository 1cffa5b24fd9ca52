"""Reading tensor summaries fast: a long run's trace file holds hundreds of thousands."""

from __future__ import annotations

from typing import Any

from ..model import Node, TensorSummary
from .decode import MAX_INT, NONFINITE, numbers

_SUMMARY_KEYS = frozenset(("shape", "dtype", "device", "norm", "max_abs", "mean", "nan", "inf", "value",
                           "counts_exact"))


def plain_summary(data: dict, ref: Node | None) -> TensorSummary | None:
    """The summary in `data` when it is in the plain form gradscope writes (checked here,
    field by field: a long run's file holds hundreds of thousands), else None for
    `read_summary`'s general reading, which says what is wrong."""
    if not data.keys() <= _SUMMARY_KEYS:
        return None
    get = data.get
    if "shape" in data:
        shape = data["shape"]
        if type(shape) is not list:
            return None
        for d in shape:
            if type(d) is not int or not -1 <= d <= MAX_INT:
                return None
    elif ref is not None:
        shape = ref.shape  # (checked when its node was read)
        if type(shape) is not list:
            return None
    else:
        return None
    dtype = data["dtype"] if "dtype" in data else ref.dtype if ref is not None else None
    device = get("device", ref.device if ref is not None and ref.device is not None else "cpu")
    if type(dtype) is not str or type(device) is not str:
        return None
    # (the three statistics one by one, floats first: a long run's file holds hundreds of thousands)
    norm, max_abs, mean = get("norm"), get("max_abs"), get("mean")
    if norm is not None and type(norm) is not float:
        norm = _stat(norm)
        if norm is _BAD:
            return None
    if max_abs is not None and type(max_abs) is not float:
        max_abs = _stat(max_abs)
        if max_abs is _BAD:
            return None
    if mean is not None and type(mean) is not float:
        mean = _stat(mean)
        if mean is _BAD:
            return None
    nan, inf, exact = get("nan", 0), get("inf", 0), get("counts_exact", True)
    if type(nan) is not int or type(inf) is not int or not (0 <= nan <= MAX_INT and 0 <= inf <= MAX_INT) \
            or type(exact) is not bool:
        return None
    value = get("value")
    if value is not None:
        value = numbers(value, "value")
    return TensorSummary(list(shape), dtype, device, norm, max_abs, mean, nan, inf, value, exact)


_BAD = object()


def _stat(v: Any) -> Any:
    """A statistic that is not a plain float: an integer in range, a non-finite float's
    word, or `_BAD`."""
    if type(v) is int and -MAX_INT <= v <= MAX_INT:
        return v
    if type(v) is str and v in NONFINITE:
        return NONFINITE[v]
    return _BAD
