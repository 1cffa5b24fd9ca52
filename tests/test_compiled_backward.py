"""A backward inside a `torch.compile`d function (issue #13, lost passes): Dynamo never
traces backward (it breaks its graph there), so the pass runs eagerly and is recorded, at
the user's line, with the user's numbers and warnings exactly as without gradscope."""

from __future__ import annotations

import warnings

import pytest
import torch

import gradscope
from gradscope.model import load


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Backward breaks Dynamo's graph, with or without gradscope: leave no graph-break count
    behind for the tests that assert none (torch._dynamo.reset() keeps the counters)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()


def _train(traced: bool, backend: str):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x = torch.randn(4, 3)

    def step(x):
        loss = model(x).pow(2).mean()
        loss.backward()  # the pass
        return loss

    compiled = torch.compile(step, backend=backend)
    t = None
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        if traced:
            with gradscope.trace() as t:
                losses = [compiled(x) for _ in range(2)]
        else:
            losses = [compiled(x) for _ in range(2)]
    numbers = [*losses, model.weight.grad.clone(), model.bias.grad.clone()]
    return t, numbers, [str(w.message) for w in seen]


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_backward_inside_a_compiled_function_is_recorded(backend, tmp_path):
    torch._dynamo.reset()
    plain_t, plain, plain_warnings = _train(False, backend)
    torch._dynamo.reset()
    t, traced, traced_warnings = _train(True, backend)
    assert all(torch.equal(a, b) for a, b in zip(traced, plain))  # bitwise the same numbers
    assert traced_warnings == plain_warnings
    assert len(t.passes) == 2
    for p in t.passes:
        assert p.source.code == "loss.backward()  # the pass" and p.source.function == "step"
        assert p.error is None
        # the gradient recorded on the weight is the one the user got (after 1 and 2 passes)
    weight = [n for n in t.passes[1].graph.leaves if n.shape == [1, 3]][0]
    assert weight.grad_after.norm == pytest.approx(float(traced[2].norm()))
    assert torch._C._len_torch_function_stack() == 0
    t.save(tmp_path / "trace.json")
    assert len(load(tmp_path / "trace.json").passes) == 2


def test_a_compiled_backward_after_the_trace_is_not_recorded_into_it():
    torch._dynamo.reset()
    model = torch.nn.Linear(3, 1)
    x = torch.randn(4, 3)

    def step(x):
        model(x).sum().backward()

    compiled = torch.compile(step, backend="eager")
    with gradscope.trace() as t:
        compiled(x)
    compiled(x)  # (Dynamo's guard on the mode stack recompiles without the recorder)
    assert len(t.passes) == 1
