"""What building the model's objects plainly costs: traced loops, trace load and the report,
timed for this checkout and for another one (e.g. main before a change), interleaved.

    python bench/bench_model_objects.py --against /tmp/main-checkout --rounds 3
    python bench/bench_model_objects.py                  # this checkout alone

Each round runs one child process per checkout (the same script, with that checkout first on
`sys.path`), so both see the same machine load; the medians over rounds and their ratio
(this / other) are printed. In each child, per model of bench/bench_longrun.py (`small`:
5-layer MLP, batch 64, SGD; `transformer`: 6-layer encoder, d 64, AdamW), torch on one thread:

- the training loop untraced and under `gradscope.trace()` (default options), per step;
- `gradscope.load` of the trace saved in format 2;
- `trace_to_html` of the loaded trace (Graphviz lays out each distinct graph once);
- memory (tracemalloc, a separate run of a quarter of the steps): the Python heap the live
  trace holds per pass, and that of the loaded trace.
"""

from __future__ import annotations

import argparse
import gc
import json
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


def child(root: Path, models: list[str], steps: dict[str, int]) -> dict:
    sys.path.insert(0, str(HERE))
    from bench_longrun import script  # (puts this checkout on sys.path: `root` goes before it)

    sys.path.insert(0, str(root))
    import torch

    import gradscope
    from gradscope.render.html import trace_to_html

    assert Path(gradscope.__file__).resolve().is_relative_to(root.resolve()), gradscope.__file__
    torch.set_num_threads(1)
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
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "trace.json"
            t.trace.save(path)
            start = time.perf_counter()
            loaded = gradscope.load(path)
            load = time.perf_counter() - start
        start = time.perf_counter()
        html = trace_to_html(loaded)
        report = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "trace.json"
            del t, loaded
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            with gradscope.trace() as t:
                ns["train"](n // 4)
            ns["samples"].clear()
            gc.collect()
            live = (tracemalloc.get_traced_memory()[0] - before) / len(t.passes) / 1024
            t.trace.save(path)
            del t
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            loaded = gradscope.load(path)
            gc.collect()
            held = (tracemalloc.get_traced_memory()[0] - before) / len(loaded.passes) / 1024
            tracemalloc.stop()
        out[model] = {"plain_ms_step": 1e3 * plain / n, "traced_ms_step": 1e3 * traced / n,
                      "ratio": traced / plain, "load_s": load, "html_s": report, "passes": n,
                      "html_kb": len(html) // 1024, "live_kib_pass": live, "loaded_kib_pass": held}
    return out


def run_child(root: Path, models: list[str], steps: dict[str, int]) -> dict:
    cmd = [sys.executable, __file__, "--child", str(root), "--models", ",".join(models),
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
    args = parser.parse_args()
    models, steps = args.models.split(","), {**STEPS, **json.loads(args.steps)}
    if args.child:
        print(json.dumps(child(args.child, models, steps)))
        return
    roots = {"this": ROOT, **({"other": args.against.resolve()} if args.against else {})}
    runs: dict[str, list[dict]] = {k: [] for k in roots}
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"# {uptime}")
    for r in range(args.rounds):
        for name, root in roots.items():
            runs[name].append(run_child(root, models, steps))
            print(f"  round {r} {name}: {json.dumps(runs[name][-1])}", flush=True)
    for model in models:
        print(f"{model} ({steps[model]} steps), medians of {args.rounds}:")
        for key in ("plain_ms_step", "traced_ms_step", "ratio", "load_s", "html_s", "live_kib_pass",
                    "loaded_kib_pass"):
            med = {k: statistics.median(run[model][key] for run in v) for k, v in runs.items()}
            line = "  ".join(f"{k} {v:8.3f}" for k, v in med.items())
            if "other" in med:
                line += f"   this/other {med['this'] / med['other']:.2f}"
            print(f"  {key:15} {line}")
    print(f"# {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
