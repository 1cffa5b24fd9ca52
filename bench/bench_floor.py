"""What torch's own hook mechanisms cost a small training step, before any gradscope code.

    python bench/bench_floor.py

gradscope's recorder is a `TorchFunctionMode`; it also registers global module hooks and
optimizer-step hooks. This times the 5-layer MLP of bench_longrun.py (`small`: 32→64→64→1,
batch 64, SGD) in CPU time per step, plain and with each mechanism alone doing nothing: a
pass-through mode, no-op global module forward hooks, no-op optimizer-step hooks. It is the
floor any recording built on these mechanisms pays on a model whose step is a few hundred
microseconds (docs/benchmarks.md, seventh session).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Callable, ContextManager, Iterator

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook


class PassThrough(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def module_hooks() -> Iterator[None]:
    handles = [nn.modules.module.register_module_forward_pre_hook(lambda m, i: None),
               nn.modules.module.register_module_forward_hook(lambda m, i, o: None)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def optimizer_hooks() -> Iterator[None]:
    handles = [register_optimizer_step_pre_hook(lambda o, a, k: None),
               register_optimizer_step_post_hook(lambda o, a, k: None)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


VARIANTS: dict[str, Callable[[], ContextManager]] = {
    "plain": contextlib.nullcontext,
    "pass-through mode": PassThrough,
    "module hooks": module_hooks,
    "optimizer hooks": optimizer_hooks,
}


def main(blocks: int = 7, steps: int = 300) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 32), torch.randn(64, 1)

    def block(variant: str, n: int) -> float:
        with VARIANTS[variant]():
            start = time.process_time()
            for _ in range(n):
                opt.zero_grad()
                nn.functional.mse_loss(model(x), y).backward()
                opt.step()
            return (time.process_time() - start) / n * 1e6

    for v in VARIANTS:  # warm up
        block(v, 50)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(blocks):  # interleaved, so every variant sees the same noise
        for v in VARIANTS:
            times[v].append(block(v, steps))
    plain = statistics.median(times["plain"])
    print(f"# small MLP, torch {torch.__version__}, CPU time per step, median of {blocks} blocks of {steps}")
    for v, t in times.items():
        print(f"{v:18} {statistics.median(t):7.0f} us   x{statistics.median(t) / plain:.2f}")


if __name__ == "__main__":
    main()
