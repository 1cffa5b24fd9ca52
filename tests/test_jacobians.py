"""Local Jacobians on edges: d output / d input, rows = output elements, cols = input elements.

Checked against torch.autograd.functional.jacobian, including inputs that broadcast (their
Jacobian is reduced to the input's own shape), and against the chain rule on the zoo:
upstream gradient x local Jacobian = the gradient recorded on the edge.
"""

from __future__ import annotations

import pytest
import torch
from zoo import CASES

import gradscope

A = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
V = torch.tensor([7.0, 8.0, 9.0])

# name -> (function, its inputs); every input requires grad and is a leaf of the graph
BROADCAST = {
    "mul": (lambda a, v: a * v, (A, V)),
    "add": (lambda a, v: a + v, (A, V)),
    "sub": (lambda a, v: a - v, (A, V)),
    "div": (lambda a, v: a / v, (A, V)),
    "mul_column": (lambda a, c: a * c, (A, torch.tensor([[2.0], [3.0]]))),
    "addmm_bias_1": (lambda b, x, w: torch.addmm(b, x, w),
                     (torch.tensor([0.5]), torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))),
    "addmm_bias_row": (lambda b, x, w: torch.addmm(b, x, w),
                       (torch.tensor([0.5, 1.5]), torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.eye(2))),
    "where": (lambda a, v: torch.where(A > 2.5, a, v), (A, V)),
    "expand": (lambda v: v.expand(2, 3), (V,)),
    "scalar_tensor_mul": (lambda a, s: a * s, (V, torch.tensor(3.0))),
    "scalar_tensor_add": (lambda s, a: s + a, (torch.tensor(3.0), V)),
}


def _trace(fn, inputs):
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    with gradscope.trace() as t:
        out = fn(*leaves)
        out.backward(torch.ones_like(out))
    return t.passes[0].graph, out


@pytest.mark.parametrize("name", sorted(BROADCAST))
def test_jacobian_of_each_input_has_the_inputs_own_shape(name):
    fn, inputs = BROADCAST[name]
    graph, out = _trace(fn, inputs)
    expected = torch.autograd.functional.jacobian(fn, inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    root = graph.roots[0]
    edges = {e.index: e for e in graph.inputs_of(root.id)}
    assert len(edges) == len(inputs)
    for i, want in enumerate(expected):
        want = want.reshape(out.numel(), inputs[i].numel())
        got = torch.tensor(edges[i].local).reshape(-1, 1) if not isinstance(edges[i].local, list) \
            else torch.tensor(edges[i].local)
        if want.numel() == 1:
            got = got.reshape(1, 1)
        assert got.shape == want.shape, (name, i, got.shape)
        assert torch.allclose(got, want), (name, i)


def test_broadcast_mul_edge_is_6_by_3_with_a_in_column_j():
    graph, _ = _trace(*BROADCAST["mul"])
    (edge,) = [e for e in graph.inputs_of(graph.roots[0].id) if e.index == 1]
    assert edge.local == [
        [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0],
        [4.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 6.0],
    ]


def test_addmm_bias_of_shape_1_is_a_column_of_ones():
    graph, _ = _trace(*BROADCAST["addmm_bias_1"])
    (edge,) = [e for e in graph.inputs_of(graph.roots[0].id) if e.index == 0]
    assert edge.local == [[1.0], [1.0]]


def _flat(value) -> list[float]:
    if isinstance(value, list):
        return [x for v in value for x in _flat(v)]
    return [float(value)]


def _chain_rule_checks(graph) -> int:
    """Assert upstream x local = edge gradient on every edge where all three are recorded."""
    checked = 0
    by_id = {n.id: n for n in graph.nodes}
    for e in graph.edges:
        dst = by_id[e.dst]
        upstream = dst.grad_outputs
        if e.local is None or e.grad is None or e.grad.value is None or not upstream:
            continue
        if any(g is None or g.value is None for g in upstream):
            continue
        up = torch.tensor([x for g in upstream for x in _flat(g.value)], dtype=torch.float64)
        jac = torch.tensor(_flat(e.local), dtype=torch.float64).reshape(up.numel(), -1)
        want = torch.tensor(_flat(e.grad.value), dtype=torch.float64)
        assert jac.shape[1] == want.numel(), (dst.grad_fn, e.index, jac.shape, want.shape)
        assert torch.allclose(up @ jac, want, rtol=1e-4, atol=1e-5), (dst.grad_fn, e.index)
        checked += 1
    return checked


@pytest.mark.parametrize("name", sorted(CASES))
def test_upstream_times_local_is_the_edge_gradient_on_the_zoo(name):
    with gradscope.trace(gradients="values", values=4096, jacobian=64) as t:
        CASES[name]()
    checked = sum(_chain_rule_checks(p.graph) for p in t.passes if p.edge_gradients)
    if name in {"lesson_backward", "lesson_grad_tensors", "second_order", "accumulation", "small_ops_chain",
                "custom_function", "logistic_regression"}:
        assert checked > 0, name
