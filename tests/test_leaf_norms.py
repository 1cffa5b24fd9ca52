"""Every leaf's value norm at each pass, and ‖Δw‖ at optimizer steps, whatever the size."""

import pytest
import torch

import gradscope
from gradscope.series import leaf_series


def test_value_norms_of_every_dtype_and_update_norms_of_each_step(tmp_path):
    torch.manual_seed(0)
    big = torch.randn(300, 40, dtype=torch.float64, requires_grad=True)  # 12,000 elements: no values
    half = torch.randn(50, dtype=torch.float16, requires_grad=True)
    w = torch.randn(64, requires_grad=True)
    opt = torch.optim.SGD([big, w], lr=0.1)
    before = []
    with gradscope.trace(save=tmp_path / "trace.json") as t:
        for _ in range(3):
            before.append((big.detach().clone(), w.detach().clone(), half.detach().clone()))
            opt.zero_grad()
            ((big ** 2).sum() + (w * 3).sum() + half.float().sum()).backward()
            opt.step()
    for p, (b, ww, h) in zip(t.passes, before):
        by = {n.name: n for n in p.graph.leaves}
        assert by["big"].value_norm == torch.linalg.vector_norm(b).item()  # float64: exact
        assert by["w"].value_norm == pytest.approx(ww.norm().item(), rel=1e-7)
        assert by["half"].value_norm == pytest.approx(h.float().norm().item(), rel=1e-6)
    steps = [e.data["update_norms"] for e in t.trace.events if e.kind == "optimizer-step"]
    assert [sorted(s) for s in steps] == [["big", "w"]] * 3  # `half` is in no optimizer
    assert steps[0]["big"] == (before[1][0] - before[0][0]).norm().item()
    assert steps[1]["w"] == pytest.approx((before[2][1] - before[1][1]).norm().item(), rel=1e-6)
    loaded = gradscope.load(tmp_path / "trace.json")
    assert [[n.value_norm for n in p.graph.leaves] for p in loaded.passes] == \
        [[n.value_norm for n in p.graph.leaves] for p in t.passes]
    series = {s.name: s for s in leaf_series(loaded)}
    ratio = dict(series["big"].update_ratio)
    assert ratio[1] == pytest.approx(steps[0]["big"] / before[0][0].norm().item(), rel=1e-12)
    assert series["half"].update_ratio == [] and len(series["half"].value_norm) == 3


def test_no_norms_with_gradients_off():
    w = torch.ones(100, requires_grad=True)
    with gradscope.trace(gradients="off") as t:
        (w * 2).sum().backward()
    assert t.passes[0].graph.leaves[0].value_norm is None


def test_updates_of_big_parameters_are_measured_on_sampled_steps_only():
    """Copying 70,000 parameters before every step would cost a share of a small model's
    step: past 65,536 elements the steps measured are the first 3 and every 10th."""
    torch.manual_seed(0)
    w = torch.randn(70_000, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    with gradscope.trace() as t:
        for _ in range(21):
            opt.zero_grad()
            (w * w).sum().backward()
            opt.step()
    steps = [e.data for e in t.trace.events if e.kind == "optimizer-step"]
    assert len(steps) == 21
    assert [i for i, d in enumerate(steps) if "update_norms" in d] == [0, 1, 2, 10, 20]
    with gradscope.trace(gradients="off") as t:  # capture only: no numbers, no copies
        opt.step()
    assert not any("update_norms" in e.data for e in t.trace.events)


def test_value_norms_of_big_leaves_are_read_on_sampled_passes():
    """Past 65,536 leaf elements the norms are read on full passes, the first 3 and every
    10th; a small model's leaves on every pass (the test above)."""
    torch.manual_seed(0)
    w = torch.randn(70_000, requires_grad=True)
    with gradscope.trace() as t:
        for _ in range(21):
            (w * w).sum().backward()
            w.grad = None
    measured = [p.index for p in t.passes if p.graph.leaves[0].value_norm is not None]
    assert measured == [0, 1, 2, 10, 20]
    assert t.passes[10].graph.leaves[0].value_norm == pytest.approx(w.norm().item(), rel=1e-6)


def test_a_small_models_norms_are_read_on_its_first_200_steps_then_every_10th():
    """A copy and a norm per parameter cost a small model's step as much as the step itself:
    a short run has them at every step, a long one on every 10th after the first 200."""
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)  # (a weight of 32 elements: its values are not kept)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(8, 8)
    with gradscope.trace() as t:
        for _ in range(235):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    measured = list(range(200)) + [200, 210, 220, 230]
    steps = [e.data for e in t.trace.events if e.kind == "optimizer-step"]
    assert [i for i, d in enumerate(steps) if "update_norms" in d] == measured
    full = {p.index for p in t.passes if p.edge_gradients}  # (a full pass has them too: full_passes.py)
    assert [p.index for p in t.passes if p.graph.find("weight").value_norm is not None] == sorted({*measured, *full})
    assert all(p.graph.find("weight").grad_after.norm for p in t.passes)  # .grad: every pass
    ratio = {s.name: s for s in leaf_series(t.trace)}["weight"].update_ratio
    assert [k for k, _ in ratio] == [k + 1 for k in measured]  # (the pass after each step measured)
