"""Where capture's overhead goes: the same traced step with parts of gradscope switched off.

    python bench/attribute_overhead.py                # the 10-layer MLP of bench_overhead.py
    python bench/attribute_overhead.py --model transformer

A development tool, not a mode of gradscope: it replaces internals for the length of a block.
Each variant is timed against an untraced block, interleaved (as in bench_overhead.py):
  floor    the recorder's mode passes every call straight through and backward is not
           recorded: what a TorchFunctionMode, the module hooks and the optimizer hooks cost
  tagging  the recorder tags ops (names, lines, modules); backward still not recorded
  capture  everything (gradients="off"), as in bench_overhead.py
The differences between rows are the parts' shares: tagging - floor, capture - tagging.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # gradscope from this checkout
from bench_overhead import mlp_step, transformer_step  # noqa: E402

import gradscope  # noqa: E402

recorder = importlib.import_module("gradscope.capture.recorder")
passes = importlib.import_module("gradscope.capture.passes")


def _pass_through(self, func, types, args=(), kwargs=None):
    return func(*args, **(kwargs or {}))


def _backward_unrecorded(self, func, args, kwargs):
    return func(*args, **kwargs)


@contextmanager
def _variant(name: str):
    """Switch parts of gradscope off for one block."""
    saved = recorder.RecordingMode.__torch_function__, passes.Passes.on_backward
    if name == "floor":
        recorder.RecordingMode.__torch_function__ = _pass_through
    if name in ("floor", "tagging"):
        passes.Passes.on_backward = _backward_unrecorded
    try:
        with gradscope.trace(gradients="off", jacobian=0):
            yield
    finally:
        recorder.RecordingMode.__torch_function__, passes.Passes.on_backward = saved


def _block(step, steps: int, variant: str | None) -> float:
    start = time.perf_counter()
    if variant is None:
        for _ in range(steps):
            step()
    else:
        with _variant(variant):
            for _ in range(steps):
                step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mlp", choices=["mlp", "transformer"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    step = mlp_step("cpu") if args.model == "mlp" else transformer_step("cpu", 2, 256, 128, 16)
    variants = ["floor", "tagging", "capture"]
    for v in [None, *variants]:  # warm up
        _block(step, args.steps, v)
    ratios: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(args.repeats):
        for v in variants if i % 2 else variants[::-1]:
            plain = _block(step, args.steps, None)
            ratios[v].append(_block(step, args.steps, v) / plain)
    print(f"# {args.model}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{args.repeats} interleaved pairs of {args.steps}-step blocks")
    for v in variants:
        r = sorted(ratios[v])
        q = len(r) // 4
        print(f"{v:8} traced/untraced {statistics.median(r):.3f}   middle half {r[q]:.3f}-{r[-1 - q]:.3f}")


if __name__ == "__main__":
    main()
