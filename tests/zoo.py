"""A zoo of small, deterministic PyTorch computations.

Each case builds its inputs from a fixed seed, runs forward, backward and (for training
cases) optimizer steps, and returns every number the user would see: losses, gradients,
parameters. Tests run each case plain and traced and compare the results bit for bit.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

Results = dict[str, torch.Tensor]
CASES: dict[str, Callable[[], Results]] = {}


def case(fn: Callable[[], Results]) -> Callable[[], Results]:
    CASES[fn.__name__] = fn
    return fn


def _params(prefix: str, module: nn.Module, out: Results) -> None:
    for name, p in module.named_parameters():
        out[f"{prefix}{name}"] = p.detach().clone()
        if p.grad is not None:
            out[f"{prefix}{name}.grad"] = p.grad.clone()


@case
def lesson_backward() -> Results:
    w = torch.tensor([1.0], requires_grad=True)
    x = torch.tensor([2.0], requires_grad=True)
    a = torch.add(w, x)
    b = torch.add(w, 1)
    y = torch.mul(a, b)
    y.backward(retain_graph=True)
    return {"y": y.detach(), "w.grad": w.grad.clone(), "x.grad": x.grad.clone()}


@case
def lesson_grad_tensors() -> Results:
    w = torch.tensor([1.0], requires_grad=True)
    x = torch.tensor([2.0], requires_grad=True)
    a = torch.add(w, x)
    b = torch.add(w, 1)
    loss = torch.cat([torch.mul(a, b), torch.add(a, b)], dim=0)
    loss.backward(gradient=torch.tensor([1.0, 2.0]))
    return {"loss": loss.detach(), "w.grad": w.grad.clone()}


@case
def second_order() -> Results:
    x = torch.tensor([3.0], requires_grad=True)
    y = torch.pow(x, 2)
    (g1,) = torch.autograd.grad(y, x, create_graph=True)
    (g2,) = torch.autograd.grad(g1, x)
    return {"g1": g1.detach(), "g2": g2}


@case
def accumulation() -> Results:
    w = torch.tensor([1.0], requires_grad=True)
    x = torch.tensor([2.0], requires_grad=True)
    out = {}
    for i in range(4):
        y = torch.mul(torch.add(w, x), torch.add(w, 1))
        y.backward()
        out[f"w.grad.{i}"] = w.grad.clone()
    return out


@case
def logistic_regression() -> Results:
    torch.manual_seed(0)
    n = torch.ones(50, 2)
    x = torch.cat([torch.normal(1.7 * n, 1) + 1.5, torch.normal(-1.7 * n, 1) + 1.5])
    y = torch.cat([torch.zeros(50), torch.ones(50)])
    model = nn.Sequential(nn.Linear(2, 1), nn.Sigmoid())
    loss_fn = nn.BCELoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    out = {}
    for i in range(30):
        loss = loss_fn(model(x).squeeze(), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        out[f"loss.{i}"] = loss.detach()
    _params("", model, out)
    return out


@case
def mlp_10_layers() -> Results:
    torch.manual_seed(1)
    layers = []
    for _ in range(10):
        layers += [nn.Linear(64, 64), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(64, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, target = torch.randn(32, 64), torch.randn(32, 1)
    out = {}
    for i in range(3):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        _params(f"{i}.", model, out)
        opt.step()
        out[f"loss.{i}"] = loss.detach()
    _params("final.", model, out)
    return out


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.relu(self.bn(self.conv1(x)))
        x = self.relu(self.conv2(x))
        x = x.mean(dim=(2, 3))
        return self.head(x)


@case
def cnn_inplace_relu() -> Results:
    torch.manual_seed(2)
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    out = {}
    for i in range(2):
        loss = nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        _params(f"{i}.", model, out)
        opt.step()
        opt.zero_grad(set_to_none=True)
        out[f"loss.{i}"] = loss.detach()
    out["running_mean"] = model.bn.running_mean.clone()
    return out


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x**2 * grad


@case
def custom_function() -> Results:
    torch.manual_seed(3)
    x = torch.randn(5, requires_grad=True)
    y = Cube.apply(x).sum()
    y.backward()
    return {"y": y.detach(), "x.grad": x.grad.clone()}


def _checkpointed(use_reentrant: bool) -> Results:
    torch.manual_seed(4)
    block = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16))
    x = torch.randn(8, 16, requires_grad=True)
    y = checkpoint(block, x, use_reentrant=use_reentrant).pow(2).sum()
    y.backward()
    out = {"y": y.detach(), "x.grad": x.grad.clone()}
    _params("", block, out)
    return out


@case
def checkpoint_reentrant() -> Results:
    return _checkpointed(True)


@case
def checkpoint_non_reentrant() -> Results:
    return _checkpointed(False)


@case
def shared_weights() -> Results:
    torch.manual_seed(5)
    layer = nn.Linear(8, 8)
    x = torch.randn(4, 8)
    y = layer(torch.tanh(layer(x))).sum()
    y.backward()
    out = {"y": y.detach()}
    _params("", layer, out)
    return out


@case
def transformer_with_dropout() -> Results:
    torch.manual_seed(6)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.1, batch_first=True)
    x = torch.randn(2, 5, 16)
    loss = layer(x).pow(2).mean()
    loss.backward()
    out = {"loss": loss.detach(), "rng": torch.rand(3)}  # the RNG stream must be untouched too
    _params("", layer, out)
    return out


@case
def gru_sequence() -> Results:
    torch.manual_seed(7)
    rnn = nn.GRU(4, 6, batch_first=True)
    x = torch.randn(2, 7, 4)
    out_seq, h = rnn(x)
    loss = out_seq.sum() + h.pow(2).sum()
    loss.backward()
    out = {"loss": loss.detach()}
    _params("", rnn, out)
    return out


@case
def small_ops_chain() -> Results:
    torch.manual_seed(8)
    a = torch.randn(3, 3, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    parts = torch.split(a @ a.T + b, 1)  # a multi-output node with an unused output
    y = torch.cat([parts[0], torch.sigmoid(parts[2])]).tanh().sum()
    y.backward()
    return {"y": y.detach(), "a.grad": a.grad.clone(), "b.grad": b.grad.clone()}


def _small_step_model() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(9)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), torch.randn(3, 4)


@case
def inference_mode_eval_loop() -> Results:
    model, x = _small_step_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = {}
    for i in range(2):
        model.train()
        loss = model(x).pow(2).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
        model.eval()
        with torch.inference_mode():  # inference tensors have no version counter
            pred = model(x)
            pred.add_(1)
            out[f"eval.{i}"] = pred.clone()
    _params("", model, out)
    return out


@case
def jit_trace() -> Results:
    model, x = _small_step_model()
    w = torch.randn(2, requires_grad=True)

    def head(h, w):
        return torch.tanh(h * w + 1)

    traced_model = torch.jit.trace(model, (x,))
    traced_head = torch.jit.trace(head, (traced_model(x), w))  # the graph names its source lines
    loss = traced_head(traced_model(x), w).pow(2).sum()
    loss.backward()
    graph = str(traced_head.graph).encode()
    out = {"loss": loss.detach(), "w.grad": w.grad.clone(), "graph": torch.tensor(list(graph), dtype=torch.uint8)}
    _params("", model, out)
    return out


def _step(model: nn.Module, x: torch.Tensor) -> None:
    model.zero_grad()
    model(x).pow(2).sum().backward()


@case
def flop_counter_count() -> Results:
    from torch.utils.flop_counter import FlopCounterMode

    model, x = _small_step_model()
    counter = FlopCounterMode(display=False)
    with counter:
        _step(model, x)
    out = {"flops": torch.tensor(counter.get_total_flops())}
    _params("", model, out)
    return out


@case
def dispatch_mode_call_count() -> Results:
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountCalls(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            CountCalls.calls += 1
            return func(*args, **(kwargs or {}))

    model, x = _small_step_model()
    with CountCalls():
        _step(model, x)
    out = {"calls": torch.tensor(CountCalls.calls)}
    _params("", model, out)
    return out


@case
def gradcheck() -> Results:
    torch.manual_seed(10)
    x = torch.randn(3, dtype=torch.double, requires_grad=True)
    ok = torch.autograd.gradcheck(lambda a: (a.sin() * a).sum(), (x,))
    y = (x.sin() * x).sum()
    y.backward()
    return {"ok": torch.tensor(ok), "x": x.detach().clone(), "x.grad": x.grad.clone()}


def train_two_models_in_threads(steps: int) -> list[nn.Module]:
    """Two different models, each trained by its own thread at the same time."""
    import threading

    torch.manual_seed(11)
    models = [(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)), torch.randn(5, 4)),
              (nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1)), torch.randn(5, 4))]

    def train(model: nn.Module, x: torch.Tensor) -> None:
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(steps):
            opt.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            opt.step()

    threads = [threading.Thread(target=train, args=mx) for mx in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [model for model, _ in models]


@case
def threaded_backward() -> Results:
    out: Results = {}
    for i, model in enumerate(train_two_models_in_threads(steps=5)):
        _params(f"{i}.", model, out)
    return out
