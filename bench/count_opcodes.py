"""Python bytecodes a traced training step runs beyond an untraced one, by function.

    python bench/count_opcodes.py                  # capture only
    python bench/count_opcodes.py --mode default
    python bench/count_opcodes.py --mode default --warm 401 --model transformer   # steady passes

Timings on a shared virtual machine move by ±5% from run to run; gradscope's own Python
cost is far smaller than that. This counts it instead, exactly and repeatably: every
bytecode executed in a few steps of a small model (an MLP of 10 × Linear(128), batch 32,
or a 2-layer transformer encoder of width 32: small, so that the count, not the
arithmetic, is what the step is about), untraced and traced, per function. It is a meter
for Python work only: what torch does in C++ on gradscope's behalf (see
docs/benchmarks.md: `grad_fn.metadata`; the mode's own dispatch) does not show here.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # gradscope from this checkout
import gradscope  # noqa: E402

MODES = {"capture": {"gradients": "off", "jacobian": 0}, "default": {}, "every-pass": {"every": 1}}


def make_step(model_name: str):
    torch.manual_seed(0)
    model: nn.Module
    if model_name == "small":  # bench_longrun.py's small MLP (32 -> 64 -> 64 -> 1, batch 64)
        model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
        x, y = torch.randn(64, 32), torch.randn(64, 1)
    elif model_name == "mlp":
        layers: list[nn.Module] = []
        for _ in range(10):
            layers += [nn.Linear(128, 128), nn.ReLU()]
        model = nn.Sequential(*layers)
        x, y = torch.randn(32, 128), torch.randn(32, 128)
    else:  # a small transformer encoder: many ops per module
        layer = nn.TransformerEncoderLayer(32, 2, 64, batch_first=True)
        model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        x, y = torch.randn(4, 8, 32), torch.randn(4, 8, 32)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()

    return step


def count(step, steps: int, options: dict | None, warm: int = 3) -> collections.Counter:
    """Bytecodes per (file, function) over `steps` steps, after `warm` unmeasured ones (a
    few hundred: a training loop's steady passes, capture/steady.py)."""
    counts: collections.Counter = collections.Counter()

    def tracer(frame, event, arg):
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            counts[(code.co_filename.split("site-packages/")[-1], code.co_name)] += 1
        return tracer

    def run() -> None:
        for _ in range(warm):
            step()
        sys.settrace(tracer)
        try:
            for _ in range(steps):
                step()
        finally:
            sys.settrace(None)

    if options is None:
        run()
    else:
        with gradscope.trace(**options):
            run()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default="capture", choices=sorted(MODES))
    parser.add_argument("--model", default="mlp", choices=["small", "mlp", "transformer"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--warm", type=int, default=3, help="unmeasured steps first (401: the window then holds no recorder's pass, every 100th)")
    parser.add_argument("--held", action="store_true",
                        help="trace as `gradscope trace` does: streamed to a file, a sample held, series as it goes")
    parser.add_argument("--no-share", action="store_true",
                        help="no full passes past the grace (which ones fall in the window depends on the clock)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.no_share:
        from gradscope.capture import full_passes

        full_passes.SHARE = 0.0
    step = make_step(args.model)
    options = dict(MODES[args.mode])
    folder = tempfile.TemporaryDirectory()
    if args.held:
        options.update(stream=Path(folder.name) / "trace.json", _hold=200)
    plain = count(step, args.steps, None, args.warm)
    traced = count(step, args.steps, options, args.warm)
    per_step = {k: (traced[k] - plain.get(k, 0)) / args.steps for k in traced}
    total_plain, total_traced = sum(plain.values()) / args.steps, sum(traced.values()) / args.steps
    print(f"# gradscope {gradscope.__version__}, torch {torch.__version__}, {args.model}, mode {args.mode}, "
          f"after {args.warm} steps{', held as gradscope trace holds' if args.held else ''}")
    print(f"bytecodes per step: untraced {total_plain:,.0f}, traced {total_traced:,.0f}, "
          f"added {total_traced - total_plain:,.0f}")
    for (filename, function), n in sorted(per_step.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{n:9,.0f}  {filename}:{function}")


if __name__ == "__main__":
    main()
