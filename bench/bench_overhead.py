"""How much slower is a training step under gradscope? Traced/untraced time ratios.

    python bench/bench_overhead.py                 # CPU: 10-layer MLP, 2-layer transformer
    python bench/bench_overhead.py --device cuda   # adds a 12-layer transformer and ResNet-50

Each model runs blocks of steps untraced and traced, interleaved (the machines are noisy,
so both see the same noise), and the ratio of each pair of blocks is reported as a median.
Modes: "capture" records graphs and lines only (gradients="off"); "default" is what
`gradscope.trace()` does with no options (gradient statistics on device and Jacobians of
small nodes, on the first 3 passes of a repeated graph and every 10th after; leaves'
.grad on every pass); "every-pass" is the default with every pass recorded in full
(every=1); "values" also keeps tensors up to 4096 elements. Blocks are long enough
(--steps) that the default's sampling shows as it does in a training run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # gradscope from this checkout
from models import resnet50  # noqa: E402

import gradscope  # noqa: E402

MODES = {
    "capture": {"gradients": "off", "jacobian": 0},
    "default": {},
    "every-pass": {"every": 1},
    "values": {"gradients": "values", "every": 1},
}


def mlp_step(device: str) -> Callable[[], None]:
    layers: list[nn.Module] = []
    for _ in range(10):
        layers += [nn.Linear(512, 512), nn.ReLU()]
    model = nn.Sequential(*layers).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(256, 512, device=device), torch.randn(256, 512, device=device)

    def step() -> None:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()

    return step


def transformer_step(device: str, layers: int, d: int, seq: int, batch: int) -> Callable[[], None]:
    layer = nn.TransformerEncoderLayer(d, nhead=max(1, d // 64), dim_feedforward=4 * d, batch_first=True)
    model = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, seq, d, device=device)

    def step() -> None:
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()

    return step


def resnet_step(device: str, batch: int) -> Callable[[], None]:
    model = resnet50().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, 224, 224, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), labels).backward()
        opt.step()

    return step


def _timed_block(step: Callable[[], None], steps: int, sync: Callable[[], None], options) -> float:
    sync()
    start = time.perf_counter()
    if options is None:
        for _ in range(steps):
            step()
    else:
        with gradscope.trace(**options):
            for _ in range(steps):
                step()
    sync()
    return (time.perf_counter() - start) / steps


def measure(step: Callable[[], None], device: str, options, repeats: int, steps: int) -> tuple[list[float], float]:
    """Traced/untraced ratios of interleaved blocks (sorted), and the median untraced step time."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(1):  # warm up both paths (allocator, kernels, caches)
        _timed_block(step, steps, sync, None)
        _timed_block(step, steps, sync, options)
    ratios, plain_times = [], []
    for i in range(repeats):
        if i % 2 == 0:  # alternate which goes first
            plain = _timed_block(step, steps, sync, None)
            traced = _timed_block(step, steps, sync, options)
        else:
            traced = _timed_block(step, steps, sync, options)
            plain = _timed_block(step, steps, sync, None)
        ratios.append(traced / plain)
        plain_times.append(plain)
    return sorted(ratios), statistics.median(plain_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block (one trace each)")
    parser.add_argument("--modes", default="capture,default,every-pass", help=f"comma-separated, of {sorted(MODES)}")
    parser.add_argument("--models", default=None, help="comma-separated subset of the models")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)

    models: dict[str, Callable[[], Callable[[], None]]] = {
        "mlp-10x512-b256": lambda: mlp_step(args.device),
        "transformer-2L-d256-s128-b16": lambda: transformer_step(args.device, 2, 256, 128, 16),
    }
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 steps, as measured in DESIGN.md
        torch.backends.cudnn.allow_tf32 = False
        models["transformer-12L-d768-s512-b8"] = lambda: transformer_step("cuda", 12, 768, 512, 8)
        models["resnet50-b64"] = lambda: resnet_step("cuda", 64)
    if args.models:
        models = {k: v for k, v in models.items() if k in args.models.split(",")}

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"# gradscope {gradscope.__version__}, torch {torch.__version__}, {args.device}: {device_name}, "
          f"threads {torch.get_num_threads()}, {args.repeats} interleaved pairs of {args.steps}-step blocks")
    print(f"{'model':32} {'mode':10} {'untraced step':>14} {'traced/untraced':>16} {'middle half of pairs':>21}")
    for name, make in models.items():
        step = make()
        for mode in args.modes.split(","):
            ratios, plain = measure(step, args.device, MODES[mode], args.repeats, args.steps)
            quarter = len(ratios) // 4
            spread = f"{ratios[quarter]:.3f}-{ratios[-1 - quarter]:.3f}"
            print(f"{name:32} {mode:10} {plain * 1e3:11.2f} ms {statistics.median(ratios):16.3f} {spread:>21}",
                  flush=True)


if __name__ == "__main__":
    main()
