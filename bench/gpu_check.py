"""On a CUDA machine: tracing keeps numbers bitwise identical and synchronises once per pass.

    python bench/gpu_check.py

1. Bitwise identity on the GPU: a few training steps of an MLP, a transformer encoder and a
   small CNN, plain and traced (defaults, and full values), compared bit for bit.
2. Synchronisations: torch's sync debug mode counts every host-device synchronisation of
   a traced training step; the count must not grow with the number of edges.
3. The lesson on the GPU: the recorded numbers are the lesson's (5, locals 2 and 3).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import gradscope  # noqa: E402

# deterministic kernels (cuDNN convolutions are not by default): otherwise two plain runs differ
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
torch.use_deterministic_algorithms(True)
DEVICE = os.environ.get("GRADSCOPE_CHECK_DEVICE", "cuda")  # "cpu" to dry-run the script


def mlp(depth: int):
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(256, 256), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(256, 1))


def run(make_model, make_batch, steps: int = 3) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = make_model().to(DEVICE)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, target = make_batch()
    out = {}
    for i in range(steps):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x).float().mean(dim=tuple(range(1, 2))), target)
        loss.backward()
        opt.step()
        out[f"loss{i}"] = loss.detach().clone()
    for name, p in model.named_parameters():
        out[name] = p.detach().clone()
    return out


CASES = {
    "mlp": (lambda: mlp(8), lambda: (torch.randn(64, 256, device=DEVICE), torch.randn(64, device=DEVICE))),
    "transformer": (
        lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(64, 4, 128, batch_first=True), 2),
        lambda: (torch.randn(8, 16, 64, device=DEVICE), torch.randn(8, 64, device=DEVICE)),
    ),
    "cnn": (
        lambda: nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                              nn.Conv2d(16, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 1)),
        lambda: (torch.randn(8, 3, 8, 8, device=DEVICE), torch.randn(8, device=DEVICE)),
    ),
}


def bitwise(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k].view(-1).view(torch.uint8), b[k].view(-1).view(torch.uint8)) for k in a
    )


def count_syncs(depth: int, traced: bool = True) -> tuple[int, int, Counter]:
    """Synchronisations in one forward+backward of an MLP of `depth` layers, the pass's edge
    count, and where in the Python code each synchronisation came from."""
    model = mlp(depth).to(DEVICE)
    x = torch.randn(64, 256, device=DEVICE)
    tracer = gradscope.trace() if traced else contextlib.nullcontext()
    with tracer:
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model(x).pow(2).mean().backward()
        torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    where = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in syncs)
    edges = len(tracer.passes[0].graph.edges) if traced else 0
    return len(syncs), edges, where


def main() -> int:
    ok = True
    print(f"# {torch.cuda.get_device_name() if DEVICE == 'cuda' else DEVICE}, torch {torch.__version__}")
    for name, (make_model, make_batch) in CASES.items():
        plain = run(make_model, make_batch)
        control = bitwise(plain, run(make_model, make_batch))
        print(f"control  {name:12} plain twice: bitwise={control}")
        for options in ({}, {"gradients": "values"}):
            with gradscope.trace(**options) as t:
                traced = run(make_model, make_batch)
            same = bitwise(plain, traced)
            ok &= same and len(t.passes) == 3
            print(f"identity {name:12} {str(options):26} bitwise={same} passes={len(t.passes)}")

    if DEVICE == "cuda":
        counts = []
        print(f"syncs    untraced mlp depth 32: {count_syncs(32, traced=False)[0]} synchronisations")
        for depth in (4, 32):
            syncs, edges, where = count_syncs(depth)
            counts.append(syncs)
            print(f"syncs    mlp depth {depth:3}: {syncs} synchronisations for {edges} edges in one traced pass;"
                  f" from {dict(where.most_common(6))}")
        ok &= counts[0] == counts[1]

    with gradscope.trace() as t:
        w = torch.tensor([1.0], device=DEVICE, requires_grad=True)
        x = torch.tensor([2.0], device=DEVICE, requires_grad=True)
        a = torch.add(w, x)
        b = torch.add(w, 1)
        y = torch.mul(a, b)
        y.backward()
    g = t.passes[0].graph
    lesson = (g.find("w").grad_after.value, g.edge("a", "y").local, g.edge("b", "y").local, g.find("w").device)
    print(f"lesson   w.grad={lesson[0]} dy/da={lesson[1]} dy/db={lesson[2]} device={lesson[3]}")
    ok &= lesson[:3] == ([5.0], 2.0, 3.0)
    print("ALL OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
