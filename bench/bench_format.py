"""Trace files of long training runs: save and load time, file size, memory per pass.

    python bench/bench_format.py                       # 10-layer MLP and 6-layer transformer, 1,000 steps
    python bench/bench_format.py --models mlp --steps 10000

Each model trains `--steps` steps under `gradscope.trace()` (defaults). The trace is then
written in format 1 (the plain dataclasses as JSON, what gradscope wrote before format 2)
and in format 2 (`Trace.save`), and each file loaded back with `gradscope.load`. Memory:
the traced run's RSS growth per pass, and the Python heap a loaded trace holds per pass
(tracemalloc). Results go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # gradscope from this checkout
import gradscope  # noqa: E402
from bench_overhead import mlp_step, transformer_step  # noqa: E402


def transformer(device: str) -> Callable[[], None]:
    """A 6-layer transformer encoder (d 64, seq 32, batch 8, AdamW): the graph and parameters
    of any 6-layer encoder (what a trace's size depends on), at a CPU's pace."""
    return transformer_step(device, layers=6, d=64, seq=32, batch=8)


MODELS = {"mlp": mlp_step, "transformer": transformer}  # the MLP: 10 × Linear(512), batch 256


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def heap_of(fn: Callable[[], object]) -> tuple[int, object]:
    """The Python heap what `fn` returns holds (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    result = fn()
    gc.collect()
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return size, result


def save_v1(trace: gradscope.Trace, path: Path) -> None:
    """What gradscope wrote before format 2: every pass's whole graph."""
    path.write_text(json.dumps({"format": "gradscope-trace", "version": 1, **asdict(trace)},
                               separators=(",", ":"), allow_nan=True))


def bench(name: str, steps: int, device: str, folder: Path) -> dict:
    step = MODELS[name](device)
    step()  # warm-up, untraced
    rss0 = rss()
    run_s, t = timed(lambda: _run(step, steps))
    trace = t.trace
    out = {"model": name, "steps": steps, "passes": len(trace.passes), "run_s": run_s,
           "rss_per_pass": (rss() - rss0) / steps,
           "full_passes": sum(p.edge_gradients for p in trace.passes),
           "params": len(trace.passes[-1].graph.leaves), "nodes": len(trace.passes[-1].graph.nodes)}
    for version, save in (("v1", save_v1), ("v2", gradscope.Trace.save)):
        path = folder / f"{name}-{version}.json"
        out[f"save_{version}_s"], _ = timed(lambda: save(trace, path))
        out[f"size_{version}"] = path.stat().st_size
        out[f"load_{version}_s"], loaded = timed(lambda: gradscope.load(path))
        assert len(loaded.passes) == len(trace.passes)
        del loaded
        gc.collect()
        out[f"heap_{version}_per_pass"] = heap_of(lambda: gradscope.load(path))[0] / steps
    return out


def _run(step: Callable[[], None], steps: int) -> gradscope.trace:
    with gradscope.trace() as t:
        for _ in range(steps):
            step()
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"# {time.strftime('%Y-%m-%d')} · {platform.processor() or platform.machine()} · "
          f"{os.cpu_count()} CPUs · torch {torch.__version__} · python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            r = bench(name, args.steps, args.device, Path(tmp))
            print(f"{r['model']}: {r['steps']} steps ({r['full_passes']} full), {r['params']} parameters, "
                  f"{r['nodes']} nodes; traced run {r['run_s']:.1f} s, RSS +{r['rss_per_pass'] / 1024:.1f} KiB/pass")
            for v in ("v1", "v2"):
                print(f"  {v}: {r[f'size_{v}'] / 2**20:.1f} MB ({r[f'size_{v}'] / r['steps'] / 1024:.2f} KiB/pass), "
                      f"save {r[f'save_{v}_s']:.2f} s, load {r[f'load_{v}_s']:.2f} s, "
                      f"loaded heap {r[f'heap_{v}_per_pass'] / 1024:.1f} KiB/pass")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
