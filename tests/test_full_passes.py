"""Small graphs in long loops: which passes are recorded in full is chosen by their cost."""

import contextlib

import pytest
import torch
from torch import nn

import gradscope
from gradscope.capture import full_passes
from gradscope.capture.full_passes import FullPasses


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_every_pass_is_full_within_the_grace_then_while_under_the_share():
    clock = Clock()
    budget = FullPasses(grace=0.1, share=0.1, first=2, clock=clock, short=0)
    chosen = []
    for _ in range(400):  # a step of 10 ms; a backward of 50 ms in full, 2 ms without
        full = budget.due()
        chosen.append(full)
        budget.ran(full, 0.05 if full else 0.002)
        clock.now += (0.05 if full else 0.002) + 0.01
    # three full passes use up the grace (they count whole: no light pass measured yet)
    assert chosen[:4] == [True, True, True, False]
    # then a full pass whenever the time spent on them is back under a tenth of the run's
    assert 8 <= sum(chosen) <= 14 and chosen.index(True, 3) > 100
    assert budget.spent <= 0.1 * (clock.now - budget.started) + 0.05
    assert budget.describe().startswith(f"{sum(chosen)} of 400 passes")


def test_a_full_pass_is_charged_its_finishing_too_less_a_light_ones():
    """Writing a full pass's record (edge gradients, Jacobians) costs far more than a light
    one's: that difference counts against the budget as its backward's does."""
    budget = FullPasses(grace=0.1, share=0.1, first=0, clock=Clock())
    budget.finished(False, 0.001)  # a light pass's finishing: the baseline
    budget.ran(True, 0.02)
    budget.finished(True, 0.031)
    assert budget.spent == pytest.approx(0.02 + 0.030)
    budget.finished(False, 0.011)  # the baseline moves as a moving average: 0.9 * 1 ms + 0.1 * 11 ms
    budget.finished(True, 0.002)
    assert budget.spent == pytest.approx(0.05 + 0.0)  # cheaper than a light one: nothing to charge
    budget.finished(True, 0.012)
    assert budget.spent == pytest.approx(0.05 + 0.010)


def test_the_first_passes_are_full_whatever_they_cost():
    clock = Clock()
    budget = FullPasses(grace=0.0, share=0.0, first=3, clock=clock, short=0)
    chosen = []
    for _ in range(6):
        chosen.append(budget.due())
        budget.ran(chosen[-1], 5.0)
        clock.now += 6.0
    assert chosen == [True, True, True, False, False, False]


def test_a_short_run_of_a_cheap_graph_is_full_by_count_on_a_slow_machine_too():
    """A run's first `SHORT` passes are full, past the grace, while a full pass costs under
    `SHORT_COST` on average: a machine three times slower records the same passes of a
    short run in full. A costly graph gets the grace alone."""
    for cost, full in ((0.004, 150), (0.07, 5)):  # 150 x 4 ms = 0.6 s; 70 ms: 0.3 s after 5
        clock = Clock()
        budget = FullPasses(grace=0.3, share=0.0, first=2, clock=clock, short=150)
        chosen = []
        for _ in range(400):
            chosen.append(budget.due())
            budget.ran(chosen[-1], cost if chosen[-1] else 0.0)
            clock.now += 0.01
        assert chosen[:full] == [True] * full and not any(chosen[full:])
        assert budget.describe().startswith(f"{full} of 400 passes")
        assert "(the first 150: while under 5 ms each on average)" in budget.describe()


def test_a_cheap_short_loop_is_full_on_every_pass():
    """A loop like the showcases' (141 steps of a logistic regression): every pass in full."""
    torch.manual_seed(0)
    layer = nn.Linear(2, 1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    x, y = torch.randn(16, 2), torch.rand(16, 1).round()
    with gradscope.trace() as t:
        for _ in range(141):
            opt.zero_grad()
            nn.functional.binary_cross_entropy_with_logits(layer(x), y).backward()
            opt.step()
    assert len(t.passes) == 141 and all(p.edge_gradients for p in t.passes)
    assert "full_passes" not in t.trace.meta


def test_past_its_budget_a_small_graph_is_sampled_and_its_numbers_unchanged(monkeypatch):
    monkeypatch.setattr(full_passes, "GRACE", 0.0)
    monkeypatch.setattr(full_passes, "SHARE", 0.0)
    monkeypatch.setattr(full_passes, "FIRST", 3)
    monkeypatch.setattr(full_passes, "SHORT", 0)

    def run(traced: bool) -> tuple[list, gradscope.trace | None]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(32, 8), torch.randn(32, 1)
        grads = []
        with gradscope.trace() if traced else contextlib.nullcontext() as t:
            for _ in range(8):
                opt.zero_grad()
                nn.functional.mse_loss(model(x), y).backward()
                grads.append([p.grad.clone() for p in model.parameters()])
                opt.step()
        return grads, (t if traced else None)

    plain, _ = run(False)
    traced, t = run(True)
    passes = t.passes
    assert t.trace.meta["full_passes"].startswith("3 of 8 passes of small graphs recorded in full")
    assert [p.edge_gradients for p in passes] == [True] * 3 + [False] * 5
    assert all(e.grad is None for p in passes[3:] for e in p.graph.edges)
    # the light passes still have each parameter's .grad norm
    w = [p.graph.find("0.weight").grad_after.norm for p in passes]
    assert w == pytest.approx([float(g[0].norm()) for g in traced], rel=1e-6) and all(w)
    assert all(torch.equal(a, b) for ga, gb in zip(plain, traced) for a, b in zip(ga, gb))


def test_a_slow_step_cannot_make_most_passes_full(monkeypatch):
    """Full passes cheap beside a slow step (a loaded machine): no closer than `every`."""
    clock = Clock()
    monkeypatch.setattr(full_passes, "FREE", 5)
    budget = FullPasses(grace=0.1, share=0.1, first=2, clock=clock, short=0)
    chosen = []
    for _ in range(200):  # a step of 1 s, a full backward of 50 ms: the time share allows all
        chosen.append(budget.due(every=10))
        budget.ran(chosen[-1], 0.05 if chosen[-1] else 0.002)
        clock.now += 1.0
    full = [k for k, c in enumerate(chosen) if c]
    assert full[:5] == [0, 1, 2, 3, 4] and all(b - a >= 10 for a, b in zip(full[4:], full[5:]))
    assert 20 <= len(full) <= 25


def test_a_big_graphs_sampled_full_passes_are_budgeted_too(monkeypatch):
    """A big graph's full pass can cost several of its steps: past its first 3 passes the
    every-10th ones are full only within the budget; the meta says how many were left light."""
    monkeypatch.setattr(full_passes, "GRACE", 0.0)
    monkeypatch.setattr(full_passes, "SHARE", 0.0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1))  # 256 x 256 outputs: big
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(256, 256)
    with gradscope.trace() as t:
        for _ in range(25):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    assert [p.index for p in t.passes if p.edge_gradients] == [0, 1, 2]  # (10 and 20 were due: left light)
    assert t.trace.meta["full_passes"] == ("3 of 25 passes of big graphs recorded in full: the first ones of each "
                                           "graph, then every `every`-th while full passes took under 0 s, then "
                                           "under 0% of the run's time (2 sampled passes left without edge gradients)")
    assert all(p.graph.find("0.weight").grad_after.norm for p in t.passes)
