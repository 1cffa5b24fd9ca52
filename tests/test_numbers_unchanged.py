"""Tracing never changes a number the user computes, and leaves nothing behind."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
import torch.nn as nn
from zoo import CASES

import gradscope
from gradscope.capture import NestedTraceError

EVERY_OPTION = [
    {},  # the defaults
    {"gradients": "values", "values": 4096, "jacobian": 64},
    {"gradients": "off", "jacobian": 0},
]


def assert_bitwise_equal(plain: dict, traced: dict) -> None:
    assert plain.keys() == traced.keys()
    for key in plain:
        a, b = plain[key], traced[key]
        assert a.dtype == b.dtype and a.shape == b.shape, key
        assert torch.equal(a.view(-1).view(torch.uint8), b.view(-1).view(torch.uint8)), key


@pytest.mark.parametrize("options", EVERY_OPTION, ids=["defaults", "values+jacobian", "off"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_traced_numbers_are_bitwise_identical(name, options):
    plain = CASES[name]()
    with gradscope.trace(**options) as t:
        traced = CASES[name]()
    assert_bitwise_equal(plain, traced)
    assert t.passes, "the case ran backward, so the trace must hold passes"
    assert_nothing_installed()


def assert_nothing_installed() -> None:
    from torch.nn.modules import module as module_mod
    from torch.optim import optimizer as optimizer_mod

    assert torch._C._len_torch_function_stack() == 0
    assert not module_mod._global_forward_pre_hooks
    assert not module_mod._global_forward_hooks
    assert not optimizer_mod._global_optimizer_post_hooks
    assert gradscope.capture.active_tracer() is None


def test_compiled_function_stays_compiled_and_identical():
    """Dynamo must see straight through the recorder: a function compiled inside a trace
    gives the compiled numbers, and stays compiled (no eager fallback) after the trace."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    x = torch.randn(64, 257, requires_grad=True)

    def f(t):
        return torch.softmax(t * 1.7, dim=-1).mul(t.sin()).sum(dim=-1).logsumexp(0)

    compiled = torch.compile(f, backend="inductor")
    reference = compiled(x)
    (ref_grad,) = torch.autograd.grad(reference, x)
    assert not torch.equal(ref_grad, torch.autograd.grad(f(x), x)[0]), "eager must differ for this test to bite"

    with gradscope.trace() as t:
        y = compiled(x)
        y.backward()
    graphs_after_trace = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    after = compiled(x)
    (after_grad,) = torch.autograd.grad(after, x)

    assert torch.equal(y, reference) and torch.equal(x.grad, ref_grad)  # compiled, not eager
    assert torch.equal(after, reference) and torch.equal(after_grad, ref_grad)
    assert not torch._dynamo.utils.counters["graph_break"]
    # the mode on the stack is a guard: one compile for the traced call, none after it
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs_after_trace
    assert len(t.passes) == 1
    assert_nothing_installed()


def test_exception_in_block_propagates_unchanged_and_cleans_up():
    error = ValueError("boom")
    with pytest.raises(ValueError) as info:
        with gradscope.trace():
            w = torch.ones(2, requires_grad=True)
            (w * 2).sum().backward()
            raise error
    assert info.value is error
    assert_nothing_installed()


def test_autograd_error_propagates_unchanged_and_cleans_up():
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad") as info:
        with gradscope.trace():
            w = torch.tensor([1.0], requires_grad=True)
            w.add_(1)
    assert type(info.value) is RuntimeError
    assert_nothing_installed()


def test_nested_trace_gives_clear_error_and_outer_keeps_working():
    with gradscope.trace() as outer:
        with pytest.raises(NestedTraceError, match="cannot be nested"):
            with gradscope.trace():
                pass
        w = torch.ones(2, requires_grad=True)
        (w * 3).sum().backward()
    assert len(outer.passes) == 1
    assert outer.passes[0].graph.leaves[0].grad_after.value == [3.0, 3.0]
    assert_nothing_installed()


def test_trace_keeps_no_tensor_or_graph_alive():
    with gradscope.trace(gradients="values") as t:
        w = torch.randn(1000, requires_grad=True)
        h = torch.tanh(w * 2)
        loss = h.sum()
        loss.backward(retain_graph=True)
        refs = [weakref.ref(w), weakref.ref(h), weakref.ref(loss)]
        del w, h, loss
        gc.collect()
        assert [r() for r in refs] == [None, None, None]  # already inside the block
    assert len(t.passes) == 1  # ... while the trace itself is still here


def test_notes_on_dead_graphs_are_dropped_and_live_ones_kept():
    """gradscope's notes on autograd nodes sit beside the graph (reading grad_fn.metadata is
    costly), so they must go when the graph goes: a long loop of forwards that are never
    backwarded keeps the table bounded, and a graph still alive keeps its names and lines."""
    from gradscope.capture import nodetable

    with gradscope.trace() as t:
        w = torch.ones(3, requires_grad=True)
        kept = (w * 2).sum()  # alive through every sweep
        for _ in range(3 * nodetable._FIRST_SWEEP // 2):
            (w * 3).sum()  # two nodes each, dropped at once
        assert len(t._tracer.nodes) < 2 * nodetable._FIRST_SWEEP
        kept.backward()
    node = t.passes[0].graph.find("kept")
    assert node.op == "sum" and node.source.code == "kept = (w * 2).sum()  # alive through every sweep"
    assert [n.op for n in t.passes[0].graph.nodes] == ["sum", "mul", None]


def test_notes_of_a_training_step_go_one_pass_after_its_backward():
    with gradscope.trace() as t:
        w = torch.ones(3, requires_grad=True)
        sizes = []
        for _ in range(5):
            loss = (w * 2).exp().sum()  # three ops a step
            loss.backward()
            sizes.append(len(t._tracer.nodes))
    # after each backward: this step's notes (the last step's went as this pass ended)
    assert sizes == [3, 3, 3, 3, 3]
    assert all(p.graph.find("loss").source is not None for p in t.passes)


def test_hooks_are_removed_from_a_retained_graph():
    """After the trace, a retained graph's nodes carry no gradscope hook: the recorder that
    the hooks close over is freed, and another backward through the graph runs untouched."""
    import gradscope.capture.backward as backward_mod

    recorders = []
    original = backward_mod.PassRecorder.__init__

    def spy(self, *a, **k):
        original(self, *a, **k)
        recorders.append(weakref.ref(self))

    backward_mod.PassRecorder.__init__ = spy
    try:
        with gradscope.trace():
            w = torch.tensor([1.0, 2.0], requires_grad=True)
            y = (w * w).sum()
            y.backward(retain_graph=True)
    finally:
        backward_mod.PassRecorder.__init__ = original
    gc.collect()
    assert len(recorders) == 1 and recorders[0]() is None
    y.backward()
    assert w.grad.tolist() == [4.0, 8.0]


def test_module_hooks_do_not_leak_after_module_raises():
    class Broken(nn.Module):
        def forward(self, x):
            raise KeyError("inside forward")

    with pytest.raises(KeyError):
        with gradscope.trace():
            Broken()(torch.ones(1))
    assert_nothing_installed()


def test_lbfgs_closure_backward_is_recorded_inside_step():
    def run():
        torch.manual_seed(0)
        w = torch.randn(3, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=4)

        def closure():
            opt.zero_grad()
            loss = (w - 1.5).pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return {"w": w.detach().clone()}

    plain = run()
    with gradscope.trace() as t:
        traced = run()
    assert_bitwise_equal(plain, traced)
    assert len(t.passes) >= 2 and all(p.graph.find("loss").op == "sum" for p in t.passes)
    assert [e.kind for e in t.trace.events].count("optimizer-step") == 1


def test_optimizer_step_that_raises_leaves_nothing_installed():
    class Broken(torch.optim.SGD):
        def step(self, closure=None):
            raise FloatingPointError("step failed")

    w = torch.ones(2, requires_grad=True)
    opt = Broken([w], lr=0.1)
    with pytest.raises(FloatingPointError):
        with gradscope.trace():
            (w * 2).sum().backward()
            opt.step()
    assert_nothing_installed()


def test_recorder_steps_aside_during_an_optimizer_step_without_closure():
    """The step's many in-place updates must not each be dispatched to the recorder."""
    stack_depth_in_step = []

    class Probe(torch.optim.SGD):
        def step(self, closure=None):
            stack_depth_in_step.append(torch._C._len_torch_function_stack())
            return super().step(closure)

    w = torch.ones(2, requires_grad=True)
    opt = Probe([w], lr=0.1, momentum=0.9)
    with gradscope.trace():
        (w * 2).sum().backward()
        opt.step()
        (w * 2).sum().backward()
        opt.step(closure=None)
        opt.step(lambda: (w * 2).sum())  # a closure may run backward: the recorder stays
        assert torch._C._len_torch_function_stack() == 1
    assert stack_depth_in_step == [0, 0, 1]


def test_recorder_is_back_after_an_optimizer_step():
    w = torch.ones(2, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    with gradscope.trace() as t:
        for _ in range(2):
            y = (w * 2).sum()
            y.backward()
            opt.step()
            opt.zero_grad()
    assert [p.graph.find("y").source is not None for p in t.passes] == [True, True]
    assert torch._C._len_torch_function_stack() == 0
