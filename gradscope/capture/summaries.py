"""Tensor statistics computed on the tensor's device, brought to the host once per pass.

During backward, gradients are summarised as they flow: a few reductions launched on the
gradient's own device. On an accelerator never a `.item()` (it would synchronise once per
edge): the pass's summaries are queued here and `resolve()` copies them all to the host in
one transfer per device when the pass ends. A CPU tensor's numbers are read at once.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from ..model import TensorSummary
from ._torch import version_of
from .host_copy import HostCopy, host_numbers, real_shape

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
        self.stats = stats  # statistics still on the device: a tuple of 0-d tensors
        self.values = values  # a small tensor's copy, still on the device
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
        self._parts: list | None = None
        self._transfers: dict[torch.device, HostCopy] = {}

    def summarize(self, tensor: torch.Tensor | None, norm_only: bool = False) -> Pending | None:
        """A summary of `tensor` (gradients: call under `torch.no_grad()`).

        A CPU tensor is summarised at once (reading a CPU number costs nothing); an
        accelerator's is queued for the pass's one transfer. `norm_only` keeps the norm of a
        large tensor but not its extremes and sum: one reduction instead of three or four.
        """
        if tensor is None or not isinstance(tensor, torch.Tensor):
            return None
        if not readable(tensor):
            return described(tensor)
        t = tensor.detach() if tensor.requires_grad else tensor  # (a detach allocates a tensor)
        small = t.numel() <= self.options.max_values
        item = Pending(list(t.shape), _dtype_name(t.dtype), _device_name(t.device), None, None)
        on_host = _on_host(t)
        if small:
            if on_host:
                item.result = _finish(item, None, host_numbers(t))
                return item
            item.values = t.clone()
        elif self.options.stats and (t.is_floating_point() or t.is_complex()):
            stats = _device_stats(t, norm_only=True) if norm_only else self._stats(t)
            if on_host:
                item.result = _finish(item, stats, None)
                return item
            item.stats = stats
        else:  # shape, dtype and device only
            item.result = _finish(item, None, None)
            return item
        self._items.append(item)
        return item

    def summarize_norms(self, tensors: list[torch.Tensor | None]) -> list[Pending | None]:
        """`summarize(t, norm_only=True)` of each tensor (a pass's leaves' `.grad`), the same
        summaries: large contiguous float32/float64 CPU tensors (parameters' gradients)
        together, their squared norms read in one go instead of one `.item()` each."""
        found: list[Pending | None] = []
        for t, norm in zip(tensors, self.norms(tensors)):
            if type(norm) is float:
                assert t is not None
                item = Pending(list(t.shape), _dtype_name(t.dtype), _device_name(t.device), None, None)
                item.result = TensorSummary(shape=item.shape, dtype=item.dtype, device=item.device, norm=norm)
                found.append(item)
            else:
                found.append(norm)  # type: ignore[arg-type]
        return found

    def norms(self, tensors: list[torch.Tensor | None]) -> list[float | Pending | None]:
        """What `summarize_norms` summarises, with the norm alone standing for the summary of
        a large contiguous float32/float64 CPU tensor (of its shape, dtype and device: a
        light pass keeps only that number). The squared norms of those are read in one go.
        (`torch._foreach_norm` measured slower here on the CPU: a kernel per tensor too.)"""
        found: list[float | Pending | None] = [None] * len(tensors)
        batched: list[tuple[int, torch.Tensor]] = []
        stats, limit = self.options.stats, self.options.max_values
        for k, t in enumerate(tensors):
            if (stats and isinstance(t, torch.Tensor) and t.is_cpu and t.dtype in _NORM_DTYPES
                    and not t.requires_grad and t.layout is _STRIDED and t.is_contiguous() and t.numel() > limit):
                batched.append((k, t))
            else:
                found[k] = self.summarize(t, norm_only=True)
        if not batched:
            return found
        flats = [t if t.dim() == 1 else t.view(-1) for _, t in batched]  # (a view is a torch call too)
        squares = torch.stack([torch.dot(f, f) for f in flats]).tolist()  # (what `_cpu_norm` reads)
        sqrt, isfinite = math.sqrt, math.isfinite
        for (k, t), square in zip(batched, squares):
            # NaN, Inf or an overflow: the whole way, counting them
            found[k] = sqrt(square) if isfinite(square) else self.summarize(t, norm_only=True)
        return found

    def _stats(self, t: torch.Tensor) -> tuple[torch.Tensor, ...] | list[float]:
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
        """A small tensor's values as nested lists of floats (queued when not on the CPU)."""
        box = Box()
        if not readable(tensor):  # (its value stays None: shape only)
            return box
        if _on_host(tensor):  # (`tolist` nests as the shape says, and is exact for every real dtype)
            box.value = (torch.view_as_real(tensor.detach()) if tensor.is_complex() else tensor).tolist()
        else:
            self._raw.append((tensor.detach() if tensor.requires_grad else tensor, box))
        return box

    def start_transfer(self) -> None:
        """Start copying every queued number to the host: one copy per device.

        (CPU tensors never get here: they are read at once.) On a CUDA device the copy is
        queued behind the pass's own kernels, into pinned memory, without waiting for it:
        `done()` says when it has landed and `resolve()` reads it (waiting only if needed).
        """
        parts = self._parts = []  # (owner, what, device, start, length, shape) per queued tensor
        if not self._items and not self._raw:  # (all on the CPU: read already)
            self._recent.clear()
            return
        by_device: dict[torch.device, list[torch.Tensor]] = {}
        offsets: dict[torch.device, int] = {}

        def queue(owner, what, *tensors):
            """Queue tensors (of one device) to be read back as one run of numbers."""
            dev = tensors[0].device
            start = length = offsets.get(dev, 0)
            for t in tensors:
                flat = t.reshape(-1)
                if flat.is_complex():
                    flat = torch.view_as_real(flat).reshape(-1)
                by_device.setdefault(dev, []).append(flat)
                length += flat.numel()
            offsets[dev] = length
            parts.append((owner, what, dev, start, length - start, real_shape(tensors[0])))

        with torch.no_grad():
            for item in self._items:
                if item.stats is not None:
                    queue(item, "stats", *item.stats)
                if item.values is not None:
                    queue(item, "values", item.values)
            for t, box in self._raw:
                queue(box, "raw", t)
            # one concatenation (cat promotes the dtypes) and one conversion per device
            self._transfers = {
                dev: HostCopy(torch.cat(chunks).to(torch.float64)) for dev, chunks in by_device.items()
            }
        for item in self._items:
            item.stats = item.values = None  # the concatenation holds what the copy needs
        self._raw.clear()
        self._recent.clear()

    def done(self) -> bool:
        """Has every copy started by `start_transfer()` landed? (Never waits.)"""
        return all(t.done() for t in self._transfers.values())

    def resolve(self) -> None:
        """Fill in every queued summary and value (starting the copy first if needed)."""
        if self._parts is None:
            self.start_transfer()
        host = {dev: t.numbers() for dev, t in self._transfers.items()}
        stats_of: dict[int, list[float]] = {}
        values_of: dict[int, list[float]] = {}
        for owner, what, dev, start, length, shape in self._parts:
            numbers = host[dev][start : start + length]
            if what == "stats":
                stats_of[id(owner)] = numbers
            elif what == "values":
                values_of[id(owner)] = numbers
            else:
                owner.value = _nest(numbers, shape)
        for item in self._items:
            item.result = _finish(item, stats_of.get(id(item)), values_of.get(id(item)))
        self._items.clear()
        self._parts = None
        self._transfers = {}


def readable(t: torch.Tensor) -> bool:
    """Can gradscope read t's values? Not those of meta tensors (there are none), sparse or
    nested tensors (their values are not laid out as their shape says): those get a
    summary of shape, dtype and device only."""
    return t.layout is _STRIDED and not t.is_nested and not t.is_meta


def described(t: torch.Tensor) -> Pending:
    """A summary of shape, dtype and device only (a ragged dimension of a nested tensor is -1)."""
    item = Pending(plain_shape(t.shape), _dtype_name(t.dtype), _device_name(t.device), None, None)
    item.result = _finish(item, None, None)
    return item


def plain_shape(shape) -> list[int]:
    """A shape as plain ints: a nested tensor's ragged (symbolic) dimension is -1."""
    return [d if type(d) is int else -1 for d in shape]


_STRIDED = torch.strided
_NORM_DTYPES = (torch.float32, torch.float64)


def _on_host(t: torch.Tensor) -> bool:
    """Is t in host memory, where reading a number costs nothing? (Else: an accelerator's,
    whose numbers are reduced there and copied once per pass.)"""
    return t.is_cpu


def _elements_key(t: torch.Tensor) -> tuple | None:
    """A key equal for tensors holding the same elements in any order, or None.

    A non-overlapping, dense tensor of n elements occupies exactly n slots from its data
    pointer on, whatever its shape and strides (a reshape, a transpose, a permute of the
    same memory): its norm, extremes and sum are those of any such view. The version
    counter tells an in-place edit apart.
    """
    if not _is_dense(t):
        return None
    return (t.device, t.data_ptr(), t.numel(), t.dtype, version_of(t))


def _is_dense(t: torch.Tensor) -> bool:
    """Does t cover exactly numel() consecutive slots from its data pointer (in any order)?"""
    expected = 1
    for st, size in sorted(zip(t.stride(), t.shape)):
        if size != 1 and st != expected:
            return False
        expected *= size
    return True


def _flat(t: torch.Tensor) -> torch.Tensor:
    """t's elements as one contiguous row when that costs no copy: a view when t is dense in
    any order (a transposed weight gradient), so that reductions read memory in order. A
    scattered tensor is copied on the CPU (its norm is a BLAS dot of a row) and left as it is
    on an accelerator (no extra memory there)."""
    if t.is_contiguous():
        return t.view(-1)
    if _is_dense(t):
        return t.as_strided((t.numel(),), (1,))
    return t.reshape(-1) if _on_host(t) else t


def _device_stats(t: torch.Tensor, norm_only: bool = False) -> tuple[torch.Tensor, ...] | list:
    """Statistics of a large tensor: [norm, max|x|, sum, #nan, #inf] on the host (CPU), or
    (norm, max|x|, sum) as 0-d tensors left on the device (accelerators). `norm_only`: the
    norm alone ([norm, None, None, #nan, #inf], or (norm,)).

    On the CPU reading a number is free, so NaN and Inf are counted only when the norm says
    one is there. On an accelerator reading would synchronise per tensor, and counting
    would cost four more kernels per edge: there the reductions are launched and the host
    learns whether a NaN or Inf is present from max|x| (or the norm) once the pass's
    numbers land.
    """
    t = _flat(t.abs() if t.is_complex() else t)
    if not _on_host(t):
        norm = torch.linalg.vector_norm(t, dtype=torch.float32)
        if norm_only:
            return (norm,)
        return norm, torch.linalg.vector_norm(t, float("inf")), t.sum(dtype=torch.float32)
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    norm = _cpu_norm(t)
    nan, inf = _nonfinite_counts(t, norm)
    if norm_only:
        return [norm, None, None, nan, inf]
    max_abs = max(-t.amin().item(), t.amax().item())  # two plain reductions beat aminmax on CPU
    return [norm, max_abs, t.sum().item(), nan, inf]


def _cpu_norm(flat: torch.Tensor) -> float:
    """The 2-norm of a contiguous real CPU row: a BLAS dot product (two to three times faster
    than vector_norm here); in float64 when the square overflows (or a NaN/Inf is there)."""
    square = torch.dot(flat, flat).item()
    if math.isfinite(square):
        return math.sqrt(square)
    return torch.linalg.vector_norm(flat, dtype=torch.float64).item()


def _nonfinite_counts(t: torch.Tensor, norm: float) -> tuple[int, int]:
    if math.isfinite(norm):
        return 0, 0
    return int(torch.isnan(t).sum()), int(torch.isinf(t).sum())


def _finish(item: Pending, stats: list | None, values: list[float] | None) -> TensorSummary:
    """The summary, from host statistics (see `_device_stats`) or values."""
    summary = TensorSummary(shape=item.shape, dtype=item.dtype, device=item.device)
    if stats is not None:
        if len(stats) == 5:  # from the CPU: counted exactly
            summary.norm, summary.max_abs, total, summary.nan, summary.inf = stats
            summary.nan, summary.inf = int(summary.nan), int(summary.inf)
        else:  # from an accelerator: presence of NaN/Inf read from max|x| (or the norm), not counted
            summary.norm = norm = stats[0]
            summary.max_abs = max_abs = stats[1] if len(stats) == 3 else None
            total = stats[2] if len(stats) == 3 else None
            summary.counts_exact = False
            biggest = norm if max_abs is None else max_abs
            summary.nan = int(biggest != biggest or norm != norm)
            summary.inf = int(biggest == math.inf)
        numel = summary.numel
        summary.mean = total / numel if total is not None and numel else None
    if values is not None:
        shape = list(item.shape) + ([2] if item.dtype.startswith("complex") else [])
        summary.value = _nest(_as_python(values, item.dtype), shape)
        if not item.dtype.startswith("complex"):
            _stats_from_values(summary, values)
    return summary


def _stats_from_values(summary: TensorSummary, flat: list[float]) -> None:
    """Statistics of a small tensor, from its values (float64 already on the host)."""
    if not flat:
        return
    summary.nan = sum(1 for v in flat if v != v)
    summary.inf = sum(1 for v in flat if v == math.inf or v == -math.inf)
    summary.norm = math.sqrt(math.fsum(v * v for v in flat))
    summary.max_abs = max(abs(v) for v in flat)
    summary.mean = math.fsum(flat) / len(flat)


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


_DTYPE_NAMES: dict[torch.dtype, str] = {}
_DEVICE_NAMES: dict[torch.device, str] = {}


def _device_name(device: torch.device) -> str:
    name = _DEVICE_NAMES.get(device)
    if name is None:
        name = _DEVICE_NAMES[device] = str(device)
    return name


def _dtype_name(dtype: torch.dtype) -> str:
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name
