"""Long training runs under gradscope: end-to-end time, memory over the run, trace files.

    python bench/bench_longrun.py e2e --model small --steps 2000 --rounds 2
    python bench/bench_longrun.py e2e --model small --steps 2000 --rounds 3 --against /tmp/base
    python bench/bench_longrun.py interleaved --model transformer --rounds 8 --chunk 60
    python bench/bench_longrun.py memory --model small --steps 2000
    python bench/bench_longrun.py memory --model transformer --steps 1000
    python bench/bench_longrun.py memory --model small --steps 10000 --hold 100

`e2e` writes the model's training loop as a script and runs `python script.py` and
`gradscope trace script.py` alternately (`--rounds` pairs, interleaved so both see the same
load), timing each command end to end (interpreter start, torch import, the loop, and for
gradscope its trace.json, report and pictures); the script samples its own RSS every 100
steps. The loop runs torch on one thread, traced or not. Each command's CPU time (user +
system, its children's) is printed beside its wall time: on a loaded machine the CPU
ratio is the steadier one, and the ratio of each kind's fastest run (CPU time) the steadiest
(on this VM the speed moves ±25% within a round). `--against DIR` runs a second checkout's gradscope (e.g. `git
archive <commit> | tar -x -C DIR`) in the same rounds, for before/after in one run. `interleaved`
alternates, in this process, chunks of the plain loop with chunks of steady traced passes
(each trace's first passes left out): both see the machine's speed of the same seconds,
the steadiest measure of what a steady pass adds (running the two commands at once, each
on a core of its own, was tried: the two cores' speeds differ by as much as the rounds'). `memory` runs the loop in this process under `gradscope.trace()` with tracemalloc
on, sampling the Python heap and RSS every 100 steps, then saves and loads the trace
(format 2), timing each by the clock and by this process's CPU time. Both print the
load average (`uptime`) before and after: the ratios are what
to compare, the seconds depend on the machine's load. `memory --hold N` traces as `gradscope
trace` does: streaming to a file, about N passes held in memory (the report's sample), the
series over time gathered as the run goes; the save then writes every pass.

Models: `small` (5 layers: Linear 32→64, ReLU, Linear 64→64, ReLU, Linear 64→1, batch 64,
SGD), `mlp` (10 × Linear(512), batch 256, SGD with momentum) and `transformer` (a 6-layer
encoder, d 64, seq 32, batch 8, AdamW): the last two as in bench_format.py.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # gradscope from this checkout

SETUP = {
    "small": """\
        model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x, y = torch.randn(64, 32), torch.randn(64, 1)
        loss_of = lambda: nn.functional.mse_loss(model(x), y)
    """,
    "mlp": """\
        model = nn.Sequential(*[m for _ in range(10) for m in (nn.Linear(512, 512), nn.ReLU())])
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        x, y = torch.randn(256, 512), torch.randn(256, 512)
        loss_of = lambda: nn.functional.mse_loss(model(x), y)
    """,
    "transformer": """\
        layer = nn.TransformerEncoderLayer(64, nhead=1, dim_feedforward=256, batch_first=True)
        model = nn.TransformerEncoder(layer, 6, enable_nested_tensor=False)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(8, 32, 64)
        loss_of = lambda: model(x).pow(2).mean()
    """,
}

LOOP = """\
    import json, os, sys, time
    import torch
    from torch import nn
    torch.manual_seed(0)
    torch.set_num_threads(1)  # (a loaded machine's threads fight each other: one is steadier)
{setup}
    samples = []

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def train(steps, sample=None):
        for step in range(steps):
            opt.zero_grad()
            loss_of().backward()
            opt.step()
            if step % 100 == 0 or step == steps - 1:
                samples.append([step, rss(), *(sample() if sample else [])])

    if __name__ == "__main__":
        train(int(sys.argv[1]))
        if len(sys.argv) > 2:
            with open(sys.argv[2], "w") as f:
                json.dump(samples, f)
"""


def script(model: str) -> str:
    return textwrap.dedent(LOOP.format(setup=textwrap.indent(textwrap.dedent(SETUP[model]), "    ")))


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def e2e(model: str, steps: int, rounds: int, against: str | None = None) -> None:
    """`python script.py` against `gradscope trace script.py` (and the `against` checkout's),
    interleaved."""
    gradscope_cmd = [sys.executable, "-m", "gradscope.cli", "trace"]
    kinds = {"plain": (str(ROOT), [sys.executable, "train.py"]),
             "traced": (str(ROOT), [*gradscope_cmd, "-o", "out", "train.py"])}
    if against:
        kinds["against"] = (str(Path(against).resolve()), [*gradscope_cmd, "-o", "out-against", "train.py"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "train.py").write_text(script(model))
        print(f"# e2e {model}, {steps} steps · {uptime()}")
        times: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
        for r in range(rounds):
            for kind, (path, cmd) in kinds.items():
                samples = folder / f"{kind}-{r}.json"
                used = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                done = subprocess.run([*cmd, str(steps), str(samples)], cwd=folder,
                                      env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True)
                seconds = time.perf_counter() - start
                now = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = now.ru_utime - used.ru_utime + now.ru_stime - used.ru_stime
                if done.returncode != 0:
                    sys.exit(f"{kind} run failed:\n{done.stderr[-3000:]}")
                times[kind].append((seconds, cpu))
                rss = json.loads(samples.read_text())
                print(f"  {kind:7} {seconds:6.1f} s (CPU {cpu:6.1f} s)  RSS {_rss_line(rss, steps)}", flush=True)
            print(f"  round {r}: traced / plain = {times['traced'][-1][0] / times['plain'][-1][0]:.2f} "
                  f"(CPU {times['traced'][-1][1] / times['plain'][-1][1]:.2f})", flush=True)
        for kind, out in (("traced", "out"), ("against", "out-against")):
            if kind not in kinds:
                continue
            wall = statistics.median(t[0] / p[0] for t, p in zip(times[kind], times["plain"]))
            cpu = statistics.median(t[1] / p[1] for t, p in zip(times[kind], times["plain"]))
            # the machine's speed moves within a round too: the fastest run of each kind is
            # the steadier comparison (both at the machine's best)
            fastest = min(t[1] for t in times[kind]) / min(p[1] for p in times["plain"])
            t = json.loads((folder / out / "trace.json").read_text())
            print(f"  {kind}: median ratio {wall:.2f} (CPU {cpu:.2f}), fastest runs' CPU ratio {fastest:.2f}; trace.json "
                  f"{(folder / out / 'trace.json').stat().st_size / 2**20:.1f} MB, {len(t['passes'])} passes, "
                  f"{sum(p.get('edge_gradients', True) for p in t['passes'])} in full; "
                  f"{t['meta'].get('full_passes', '')}")
        print(f"# {uptime()}")


def interleaved(model: str, rounds: int, chunk: int) -> None:
    """Steady passes against the plain loop in this process, in alternating chunks: each
    round a plain chunk, a trace whose first passes (full, then going steady) are left
    out and whose next `chunk` steps are timed, and a plain chunk again. Both kinds see
    the machine's speed of the same seconds: the steadiest measure of what a steady pass
    adds (`e2e` adds the start, the full passes and the end)."""
    import gradscope

    namespace: dict = {"__name__": "bench"}
    exec(script(model), namespace)
    train = namespace["train"]

    def timed() -> float:  # this thread's CPU ms per step
        began = time.thread_time()
        train(chunk)
        return (time.thread_time() - began) / chunk * 1e3

    print(f"# interleaved {model}, {rounds} rounds of {chunk} steps · {uptime()}")
    gc.freeze()  # (as `gradscope trace` freezes its start-up objects)
    train(chunk // 2)
    plain, traced = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            plain.append(timed())
            with gradscope.trace(stream=Path(tmp) / "stream.json", _hold=200):
                train(max(40, chunk // 2))  # (first passes: full, then steady)
                traced.append(timed())
            plain.append(timed())
    pairs = [t / ((a + b) / 2) for t, a, b in zip(traced, plain[0::2], plain[1::2])]
    print(f"  plain {statistics.median(plain):.2f} ms/step, steady traced {statistics.median(traced):.2f} ms/step "
          f"(CPU); ratio median {statistics.median(pairs):.3f}; rounds {', '.join(f'{r:.2f}' for r in pairs)}")
    print(f"# {uptime()}")


def _rss_line(rss: list, steps: int) -> str:
    """RSS at the first sample, after warm-up (a fifth of the run) and at the end."""
    warm = next((s for s in rss if s[0] >= steps // 5), rss[-1])
    growth = (rss[-1][1] - warm[1]) / max(rss[-1][0] - warm[0], 1)
    return (f"{rss[0][1] / 2**20:.0f} -> {warm[1] / 2**20:.0f} (step {warm[0]}) -> {rss[-1][1] / 2**20:.0f} MB; "
            f"after warm-up {growth / 1024:+.2f} KiB/step")


def memory(model: str, steps: int, keep: int | None, hold: int | None = None) -> None:
    """The loop in this process under trace(), heap and RSS sampled; then save and load."""
    import torch

    import gradscope

    namespace: dict = {"__name__": "bench"}
    exec(script(model), namespace)  # the same loop as `e2e`'s script
    print(f"# memory {model}, {steps} steps, keep={keep}, hold={hold} · {uptime()}")
    stream_dir = tempfile.TemporaryDirectory()
    options = {"stream": Path(stream_dir.name) / "stream.json", "_hold": hold} if hold else {}
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    with gradscope.trace(keep=keep, **options) as t:
        namespace["train"](steps, lambda: [tracemalloc.get_traced_memory()[0]])
    run_s = time.perf_counter() - start
    samples = namespace["samples"]
    tracemalloc.stop()
    warm = next((s for s in samples if s[0] >= steps // 5), samples[-1])
    span = max(samples[-1][0] - warm[0], 1)
    print(f"  traced loop {run_s:.1f} s (tracemalloc on); {len(t.passes)} passes held, "
          f"{sum(p.edge_gradients for p in t.passes)} in full; {t.trace.meta.get('full_passes', '')}")
    print("  heap MB by step: " + ", ".join(f"{s[0]}: {s[2] / 2**20:.1f}" for s in samples[:: max(1, len(samples) // 10)]))
    print(f"  after warm-up (step {warm[0]} on): heap {(samples[-1][2] - warm[2]) / span / 1024:+.2f} KiB/pass, "
          f"RSS {(samples[-1][1] - warm[1]) / span / 1024:+.2f} KiB/pass "
          f"({warm[1] / 2**20:.0f} -> {samples[-1][1] / 2**20:.0f} MB)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        start, cpu = time.perf_counter(), time.process_time()
        t.trace.save(path)
        save_s, save_cpu = time.perf_counter() - start, time.process_time() - cpu
        size = path.stat().st_size
        del t
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        loaded = gradscope.load(path)
        load_s, load_cpu = time.perf_counter() - start, time.process_time() - cpu
        passes = len(loaded.passes)
        assert passes == steps or keep is not None, (passes, steps)
        del loaded
        gc.collect()
        tracemalloc.start()
        loaded = gradscope.load(path)
        gc.collect()
        heap = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    print(f"  trace.json {size / 2**20:.2f} MB ({size / passes / 1024:.2f} KiB/pass); save {save_s:.2f} s, "
          f"load {load_s:.2f} s (CPU time: save {save_cpu:.2f} s, load {load_cpu:.2f} s); "
          f"loaded heap {heap / passes / 1024:.1f} KiB/pass")
    print(f"# {uptime()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["e2e", "interleaved", "memory"])
    parser.add_argument("--model", choices=list(SETUP), default="small")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=60, help="interleaved: steps timed per chunk")
    parser.add_argument("--keep", type=int, default=None, help="memory: trace(keep=N)")
    parser.add_argument("--hold", type=int, default=None,
                        help="memory: stream and hold about N passes in memory, as `gradscope trace` does")
    parser.add_argument("--against", default=None, help="e2e: also another checkout's gradscope (a folder)")
    args = parser.parse_args()
    if args.mode == "e2e":
        e2e(args.model, args.steps, args.rounds, args.against)
    elif args.mode == "interleaved":
        interleaved(args.model, args.rounds, args.chunk)
    else:
        memory(args.model, args.steps, args.keep, args.hold)


if __name__ == "__main__":
    main()
