"""What building the model's objects plainly costs: traced loops, trace load and the report,
timed for this checkout and for another one (e.g. main before a change), interleaved.

    python bench/bench_model_objects.py --against /tmp/main-checkout --rounds 3
    python bench/bench_model_objects.py                  # this checkout alone

Each round runs one child process per checkout (the same script, with that checkout first on
`sys.path`), so both see the same machine load; the medians over rounds and their ratio
(this / other) are printed. Per model of bench/bench_longrun.py (`small`: 5-layer MLP,
batch 64, SGD; `transformer`: 6-layer encoder, d 64, AdamW), torch on one thread:

- the training loop untraced and under `gradscope.trace()` (default options), per step,
  and how many passes were recorded in full (a small graph's are chosen by their cost, so
  they differ from run to run: compare its memory with that in mind);
- memory (tracemalloc, a separate traced run of a quarter of the steps): the Python heap
  the live trace holds per pass (and its full passes);
- `gradscope.load` of one trace.json (made once, by this checkout, from the full number of
  steps: both checkouts load the same file): its CPU time (least of 3) and heap per pass;
- `trace_to_html` of that loaded trace (Graphviz lays out each distinct graph once), the
  least of 3;
- the default view and DOT of a 12-block GPT-shaped decoder's graph (`views`).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STEPS = {"small": 2000, "transformer": 200}


def _setup(root: Path):
    sys.path.insert(0, str(HERE))
    from bench_longrun import script  # (puts this checkout on sys.path: `root` goes before it)

    sys.path.insert(0, str(root))
    import torch

    import gradscope

    assert Path(gradscope.__file__).resolve().is_relative_to(root.resolve()), gradscope.__file__
    torch.set_num_threads(1)
    return gradscope, script


def make(root: Path, folder: Path, models: list[str], steps: dict[str, int]) -> None:
    """The traces that every child loads and reports on (the same files for both checkouts)."""
    gradscope, script = _setup(root)
    for model in models:
        ns: dict = {"__name__": "bench"}
        exec(script(model), ns)
        with gradscope.trace() as t:
            ns["train"](steps[model])
        t.trace.save(folder / f"{model}.json")


def child(root: Path, folder: Path, models: list[str], steps: dict[str, int]) -> dict:
    gradscope, script = _setup(root)
    from gradscope.render.html import trace_to_html

    out: dict = {}
    for model in models:
        n = steps[model]
        ns: dict = {"__name__": "bench"}
        exec(script(model), ns)
        ns["train"](5)  # warm-up
        start = time.perf_counter()
        ns["train"](n)
        plain = time.perf_counter() - start
        start = time.perf_counter()
        with gradscope.trace() as t:
            ns["train"](n)
        traced = time.perf_counter() - start
        full = sum(p.edge_gradients for p in t.passes)  # (small graphs: chosen by their cost, full_passes.py)
        del t
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        with gradscope.trace() as t:
            ns["train"](n // 4)
        ns["samples"].clear()
        gc.collect()
        live = (tracemalloc.get_traced_memory()[0] - before) / len(t.passes) / 1024
        live_full = sum(p.edge_gradients for p in t.passes)
        del t
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        loaded = gradscope.load(folder / f"{model}.json")
        gc.collect()
        held = (tracemalloc.get_traced_memory()[0] - before) / len(loaded.passes) / 1024
        tracemalloc.stop()
        del loaded
        gc.collect()
        load = report = math.inf
        for _ in range(3):  # (the least of three: a loaded machine's noise only adds)
            start = time.process_time()
            loaded = gradscope.load(folder / f"{model}.json")
            load = min(load, time.process_time() - start)
            start = time.perf_counter()
            html = trace_to_html(loaded)
            report = min(report, time.perf_counter() - start)
            del loaded
            gc.collect()
        out[model] = {"plain_ms_step": 1e3 * plain / n, "traced_ms_step": 1e3 * traced / n,
                      "ratio": traced / plain, "full_passes": full, "live_kib_pass": live, "live_full": live_full,
                      "load_s": load, "loaded_kib_pass": held, "html_s": report, "html_kb": len(html) // 1024}
    out["gpt"] = views(gradscope)
    return out


def views(gradscope) -> dict:
    """The default (collapsed, folded) view and its DOT for a 12-block GPT-shaped decoder
    (examples/tiny_gpt.py, d 32): best of 3, each on a fresh copy of the graph (nothing the
    renderers kept from the last one)."""
    import torch
    from torch.nn import functional as F

    from gradscope.model import Graph
    from gradscope.render import collapse
    from gradscope.render.dot import graph_to_dot

    sys.path.insert(0, str(ROOT / "examples"))
    from tiny_gpt import GPT

    torch.manual_seed(0)
    model, idx = GPT(blocks=12, context=8), torch.randint(50, (2, 8))
    with gradscope.trace() as t:
        F.cross_entropy(model(idx).view(-1, 50), idx.view(-1)).backward()
    graph = t.passes[0].graph
    best = {"view_ms": math.inf, "dot_ms": math.inf}
    for _ in range(3):
        copy = Graph(list(graph.nodes), list(graph.edges), graph.module_calls)
        start = time.perf_counter()
        collapse.view(copy)
        best["view_ms"] = min(best["view_ms"], 1e3 * (time.perf_counter() - start))
        copy = Graph(list(graph.nodes), list(graph.edges), graph.module_calls)
        start = time.perf_counter()
        graph_to_dot(copy)
        best["dot_ms"] = min(best["dot_ms"], 1e3 * (time.perf_counter() - start))
    return {**best, "nodes": len(graph.nodes)}


def run_child(root: Path, folder: Path, models: list[str], steps: dict[str, int], mode: str = "--child") -> dict:
    cmd = [sys.executable, __file__, mode, str(root), "--folder", str(folder), "--models", ",".join(models),
           "--steps", json.dumps(steps)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"child for {root} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout of gradscope to time alongside")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default="small,transformer")
    parser.add_argument("--steps", default=json.dumps(STEPS), help='JSON, e.g. {"small": 500}')
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--make", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    models, steps = args.models.split(","), {**STEPS, **json.loads(args.steps)}
    if args.child:
        print(json.dumps(child(args.child, args.folder, models, steps)))
        return
    if args.make:
        make(args.make, args.folder, models, steps)
        print("{}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        compare(args, models, steps, Path(tmp))


def compare(args: argparse.Namespace, models: list[str], steps: dict[str, int], folder: Path) -> None:
    run_child(ROOT, folder, models, steps, "--make")  # the traces both load: made by this checkout
    roots = {"this": ROOT, **({"other": args.against.resolve()} if args.against else {})}
    runs: dict[str, list[dict]] = {k: [] for k in roots}
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"# {uptime}")
    for r in range(args.rounds):
        for name, root in roots.items():
            runs[name].append(run_child(root, folder, models, steps))
            print(f"  round {r} {name}: {json.dumps(runs[name][-1])}", flush=True)
    med = {k: {key: statistics.median(run["gpt"][key] for run in v) for key in ("view_ms", "dot_ms")}
           for k, v in runs.items()}
    print(f"12-block GPT-shaped decoder ({runs['this'][0]['gpt']['nodes']} nodes), medians of {args.rounds}:")
    for key in ("view_ms", "dot_ms"):
        line = "  ".join(f"{k} {v[key]:8.3f}" for k, v in med.items())
        if "other" in med:
            line += f"   this/other {med['this'][key] / med['other'][key]:.2f}"
        print(f"  {key:15} {line}")
    for model in models:
        print(f"{model} ({steps[model]} steps), medians of {args.rounds}:")
        for key in ("plain_ms_step", "traced_ms_step", "ratio", "full_passes", "live_kib_pass", "live_full",
                    "load_s", "loaded_kib_pass", "html_s"):
            med = {k: statistics.median(run[model][key] for run in v) for k, v in runs.items()}
            line = "  ".join(f"{k} {v:8.3f}" for k, v in med.items())
            if "other" in med:
                line += f"   this/other {med['this'] / med['other']:.2f}"
            print(f"  {key:15} {line}")
    print(f"# {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
