"""Tensor statistics computed on the tensor's device, brought to the host once per pass.

During backward, gradients are summarised as they flow: a few reductions launched on the
gradient's own device, never a `.item()` (on a GPU that would synchronise once per edge).
Every summary of a pass is queued here and `resolve()` copies them all to the host in one
transfer per device when the pass ends.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from ..model import TensorSummary

_RECENT_KEPT = 8

@dataclass(frozen=True)
class SummaryOptions:
    """What to keep of each tensor: statistics (`stats`) and values up to `max_values` elements."""

    stats: bool = True
    max_values: int = 16

class Pending:
    """A summary whose numbers are still on the device. `resolve()` of its batch fills `.result`."""

    __slots__ = ("shape", "dtype", "device", "stats", "values", "result")

    def __init__(self, shape, dtype, device, stats, values):
        self.shape = shape
        self.dtype = dtype
        self.device = device
        self.stats = stats
        self.values = values
        self.result: TensorSummary | None = None

class Box:
    """A small tensor's values as nested lists, filled in by `PendingBatch.resolve()`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: Any = None

class PendingBatch:
    """Queue of device-side summaries and small tensors, resolved together."""

    def __init__(self, options: SummaryOptions):
        self.options = options
        self._items: list[Pending] = []
        self._raw: list[tuple[torch.Tensor, Box]] = []
        # The last few large tensors summarised, held alive so their memory cannot be reused:
        # backward hands the same gradient (or a reshaped view of it) to many edges.
        self._recent: deque[tuple[tuple, torch.Tensor, torch.Tensor]] = deque(maxlen=_RECENT_KEPT)

    def summarize(self, tensor: torch.Tensor | None) -> Pending | None:
        """Queue a summary of `tensor` (gradients: call under `torch.no_grad()`)."""
        if tensor is None or not isinstance(tensor, torch.Tensor):
            return None
        t = tensor.detach()
        numel = t.numel()
        small = numel <= self.options.max_values
        values = t.clone() if small else None
        stats = None  # a small tensor's statistics are computed on the host from its values
        if self.options.stats and not small and (t.is_floating_point() or t.is_complex()):
            stats = self._stats(t)
        item = Pending(list(t.shape), _dtype_name(t.dtype), str(t.device), stats, values)
        self._items.append(item)
        return item

    def _stats(self, t: torch.Tensor) -> torch.Tensor | list[float]:
        """Device statistics of t, reused when t holds the same elements as a recent tensor."""
        key = _elements_key(t)
        if key is not None:
            for k, _, stats in self._recent:
                if k == key:
                    return stats
        stats = _device_stats(t)
        if key is not None:
            self._recent.append((key, t, stats))
        return stats

    def keep(self, tensor: torch.Tensor) -> Box:
        """Queue a small tensor whose values are wanted as nested lists."""
        box = Box()
        self._raw.append((tensor.detach(), box))
        return box

    def resolve(self) -> None:
        """Bring every queued number to the host: one copy per device."""
        by_device: dict[torch.device, list[torch.Tensor]] = {}
        # (owner, what, device, start, length, shape) per queued tensor
        parts: list[tuple[Any, str, torch.device, int, int, list[int]]] = []
        offsets: dict[torch.device, int] = {}

        def queue(owner, what, t):
            shape = _real_shape(t)
            flat = t.reshape(-1)
            if flat.is_complex():
                flat = torch.view_as_real(flat).reshape(-1)
            dev = flat.device
            start = offsets.get(dev, 0)
            by_device.setdefault(dev, []).append(flat)
            offsets[dev] = start + flat.numel()
            parts.append((owner, what, dev, start, flat.numel(), shape))

        with torch.no_grad():
            for item in self._items:
                if isinstance(item.stats, torch.Tensor):
                    queue(item, "stats", item.stats)
                if item.values is not None:
                    queue(item, "values", item.values)
            for t, box in self._raw:
                queue(box, "raw", t)
            # one concatenation (cat promotes the dtypes), one conversion, one copy per device
            host = {
                dev: torch.cat(chunks).to(torch.float64).cpu().tolist() for dev, chunks in by_device.items()
            }

        stats_of: dict[int, list[float]] = {}
        values_of: dict[int, list[float]] = {}
        for owner, what, dev, start, length, shape in parts:
            numbers = host[dev][start : start + length]
            if what == "stats":
                stats_of[id(owner)] = numbers
            elif what == "values":
                values_of[id(owner)] = numbers
            else:
                owner.value = _nest(numbers, shape)
        for item in self._items:
            stats = item.stats if isinstance(item.stats, list) else stats_of.get(id(item))
            item.result = _finish(item, stats, values_of.get(id(item)))
            item.stats = item.values = None  # drop device memory now
        self._items.clear()
        self._raw.clear()
        self._recent.clear()


def _elements_key(t: torch.Tensor) -> tuple | None:
    """A key equal for tensors holding the same elements in any order, or None.

    A non-overlapping, dense tensor of n elements occupies exactly n slots from its data
    pointer on, whatever its shape and strides (a reshape, a transpose, a permute of the
    same memory): its norm, extremes and sum are those of any such view. The version
    counter tells an in-place edit apart.
    """
    stride, shape = t.stride(), t.shape
    expected = 1
    for st, size in sorted(zip(stride, shape)):
        if size != 1 and st != expected:
            return None
        expected *= size
    return (t.device, t.data_ptr(), t.numel(), t.dtype, t._version)

def _device_stats(t: torch.Tensor) -> torch.Tensor | list[float]:
    """[norm, max|x|, sum, #nan, #inf] of t: a list on the CPU, a small tensor on t's device.

    Four plain reductions. On the CPU reading a number is free, so NaN and Inf are counted
    only when the norm says one is there. On an accelerator reading would synchronise per
    tensor: there everything stays on the device, the counts are always launched, and the
    host reads all of a pass's numbers at once.
    """
    if t.is_complex():
        t = t.abs()
    elif t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    norm = torch.linalg.vector_norm(t)
    if t.device.type == "cpu":  # two plain reductions beat aminmax on CPU
        norm_ = norm.item()
        if math.isfinite(norm_):
            nan = inf = 0
        else:
            nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        max_abs = max(-t.amin().item(), t.amax().item())
        return [norm_, max_abs, t.sum().item(), nan, inf]
    low, high = torch.aminmax(t)
    nan = torch.isnan(t).sum().to(t.dtype)
    inf = torch.isinf(t).sum().to(t.dtype)
    return torch.stack((norm, torch.maximum(-low, high), t.sum(), nan, inf))

def _finish(item: Pending, stats: list[float] | None, values: list[float] | None) -> TensorSummary:
    summary = TensorSummary(shape=item.shape, dtype=item.dtype, device=item.device)
    numel = 1
    for s in item.shape:
        numel *= s
    if stats is not None:
        norm, max_abs, total, nan, inf = stats
        summary.norm, summary.max_abs = norm, max_abs
        summary.mean = total / numel if numel else None
        summary.nan, summary.inf = int(nan), int(inf)
    if values is not None:
        shape = list(item.shape) + ([2] if item.dtype.startswith("complex") else [])
        summary.value = _nest(_as_python(values, item.dtype), shape)
        if not item.dtype.startswith("complex"):
            _stats_from_values(summary)
    return summary

def _stats_from_values(summary: TensorSummary) -> None:
    flat = _flatten(summary.value)
    if not flat or not all(isinstance(v, (int, float)) for v in flat):
        return

    summary.nan = sum(1 for v in flat if v != v)
    summary.inf = sum(1 for v in flat if v in (math.inf, -math.inf))
    summary.norm = math.sqrt(sum(float(v) * float(v) for v in flat))
    summary.max_abs = max(abs(float(v)) for v in flat)
    summary.mean = sum(float(v) for v in flat) / len(flat)

def _as_python(numbers: list[float], dtype: str) -> list:
    if dtype == "bool":
        return [bool(v) for v in numbers]
    if dtype.startswith(("int", "uint")):
        return [int(v) for v in numbers]
    return numbers

def _nest(flat: list, shape: list[int]) -> Any:
    """Reshape a flat list to nested lists of `shape` ([] -> a plain number)."""
    if not shape:
        return flat[0] if flat else None
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0] if shape[0] else 0
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]

def _flatten(v: Any) -> list:
    if isinstance(v, list):
        out: list = []
        for x in v:
            out.extend(_flatten(x))
        return out
    return [] if v is None else [v]

def _real_shape(t: torch.Tensor) -> list[int]:
    return list(t.shape) + ([2] if t.is_complex() else [])

def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
