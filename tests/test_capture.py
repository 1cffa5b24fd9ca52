"""What capture records: graphs, names, lines, passes, and the lesson's numbers."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import torch.nn as nn

import gradscope
from gradscope import TraceFormatError


def run_snippet(tmp_path, code: str, **options) -> tuple[gradscope.trace, list[str]]:
    """Run `code` as a file under a trace, so nodes point at real lines of a real file."""
    path = tmp_path / "snippet.py"
    path.write_text(textwrap.dedent(code))
    namespace: dict = {"__name__": "__main__", "__file__": str(path)}
    with gradscope.trace(**options) as t:
        exec(compile(path.read_text(), str(path), "exec"), namespace)
    return t, path.read_text().splitlines()


def line_of(lines: list[str], text: str) -> int:
    matches = [i + 1 for i, line in enumerate(lines) if text in line]
    assert len(matches) == 1, (text, matches)
    return matches[0]


LESSON = """\
    import torch
    w = torch.tensor([1.], requires_grad=True)
    x = torch.tensor([2.], requires_grad=True)
    a = torch.add(w, x)
    b = torch.add(w, 1)
    y = torch.mul(a, b)
    y.backward()
"""


def test_lesson_graph_names_lines_and_gradients(tmp_path):
    t, lines = run_snippet(tmp_path, LESSON)
    assert len(t.passes) == 1
    p = t.passes[0]
    g = p.graph
    assert p.api == "Tensor.backward" and p.source.line == line_of(lines, "y.backward()")
    assert sorted(n.grad_fn for n in g.nodes if n.kind == "op") == ["AddBackward0", "AddBackward0", "MulBackward0"]
    assert sorted(n.name for n in g.leaves) == ["w", "x"]
    for name, code in [("a", "a = torch.add"), ("b", "b = torch.add"), ("y", "y = torch.mul")]:
        node = g.find(name)
        assert node.kind == "op" and node.source.line == line_of(lines, code)
        assert node.source.code == code_line(lines, code)
        assert node.shape == [1] and node.dtype == "float32" and node.device == "cpu"
    assert g.find("y").op == "mul" and g.find("y").is_root
    w, x = g.find("w"), g.find("x")
    assert w.value == [1.0] and x.value == [2.0]
    assert w.source.line == line_of(lines, "w = torch.tensor")
    assert w.grad_before is None and w.grad_after.value == [5.0]
    assert x.grad_after.value == [2.0]
    # edges point from input to consumer, with the input's index
    assert {(g.node(e.src).name, g.node(e.dst).name, e.index) for e in g.edges} == {
        ("a", "y", 0), ("b", "y", 1), ("w", "a", 0), ("x", "a", 1), ("w", "b", 0),
    }


def code_line(lines, text):
    return lines[line_of(lines, text) - 1].strip()


def test_lesson_edge_gradients_and_local_derivatives(tmp_path):
    t, _ = run_snippet(tmp_path, LESSON)
    g = t.passes[0].graph
    assert g.find("y").seed.value == [1.0]  # backward() on a scalar seeds 1
    assert g.edge("a", "y").local == 2.0 and g.edge("a", "y").grad.value == [2.0]  # dy/da = b
    assert g.edge("b", "y").local == 3.0 and g.edge("b", "y").grad.value == [3.0]  # dy/db = a
    assert g.edge("w", "a").local == 1.0 and g.edge("w", "b").local == 1.0
    assert g.edge("w", "a").grad.value == [2.0] and g.edge("w", "b").grad.value == [3.0]
    assert g.find("a").grad.value == [2.0]  # what arrived at a
    assert g.find("w").grad_after.value == [5.0] and g.find("x").grad_after.value == [2.0]
    stats = g.edge("b", "y").grad
    assert (stats.norm, stats.max_abs, stats.mean, stats.nan, stats.inf) == (3.0, 3.0, 3.0, 0, 0)


def test_grad_tensors_seed_and_weighted_gradient(tmp_path):
    t, _ = run_snippet(tmp_path, """\
        import torch
        w = torch.tensor([1.], requires_grad=True)
        x = torch.tensor([2.], requires_grad=True)
        a = torch.add(w, x)
        b = torch.add(w, 1)
        y0 = torch.mul(a, b)
        y1 = torch.add(a, b)
        loss = torch.cat([y0, y1], dim=0)
        loss.backward(gradient=torch.tensor([1., 2.]))
    """)
    g = t.passes[0].graph
    assert g.find("loss").is_root and g.find("loss").seed.value == [1.0, 2.0]
    assert g.find("w").grad_after.value == [9.0]
    # cat's Jacobian w.r.t. y0: d loss / d y0 = [[1], [0]]
    assert g.edge("y0", "loss").local == [[1.0], [0.0]]
    assert g.edge("y1", "loss").grad.value == [2.0]


def test_two_backward_calls_with_retain_graph_give_two_passes(tmp_path):
    t, lines = run_snippet(tmp_path, LESSON.replace("y.backward()", "y.backward(retain_graph=True)\n    y.backward()"))
    assert [p.retain_graph for p in t.passes] == [True, False]
    assert [p.graph.find("w").grad_after.value for p in t.passes] == [[5.0], [10.0]]
    assert t.passes[1].graph.find("w").grad_before.value == [5.0]


def test_second_order_passes(tmp_path):
    t, lines = run_snippet(tmp_path, """\
        import torch
        x = torch.tensor([3.], requires_grad=True)
        y = torch.pow(x, 2)
        grad_1 = torch.autograd.grad(y, x, create_graph=True)
        grad_2 = torch.autograd.grad(grad_1[0], x)
    """)
    first, second = t.passes
    assert first.api == second.api == "torch.autograd.grad"
    assert first.create_graph and first.retain_graph and not second.create_graph
    assert first.results[0].value == [6.0] and second.results[0].value == [2.0]
    assert first.graph.edge("x", "y").local == 6.0  # d(x^2)/dx = 2x at x = 3
    assert first.inputs == [first.graph.find("x").id]
    # the second pass runs over the graph the first one built: made by pow's backward
    made = [n for n in second.graph.nodes if n.created_by_backward]
    assert made and all(n.source is None for n in made)
    assert any(n.grad_fn == "MulBackward0" for n in made)
    assert made[0].created_by == (f"pow at snippet.py:{line_of(lines, 'y = torch.pow')}; pass 0, "
                                  f"torch.autograd.grad at snippet.py:{line_of(lines, 'grad_1 =')} with create_graph=True")
    pow_node = next(n for n in made if n.grad_fn == "PowBackward0")
    assert pow_node.saved == {"exponent": 1.0, "self": 3.0}  # pow's backward built x ** 1
    assert second.graph.roots[0].name == "grad_1[0]"  # named after the line that made it
    assert not any(n.created_by_backward for n in first.graph.nodes)


def test_create_graph_backward_names_the_gradients_it_makes():
    with gradscope.trace() as t:
        x = torch.tensor([3.0], requires_grad=True)
        (x**3).backward(create_graph=True)
        x.grad.backward()
        (g,) = torch.autograd.grad(torch.sin(x), x, create_graph=True)
        g.backward()
    assert t.passes[1].graph.roots[0].name == "x.grad"
    assert t.passes[3].graph.roots[0].name == "dsin/dx"  # (the first sin is `sin`)
    assert t.passes[1].graph.find("x").grad_after.value == [27.0 + 18.0]  # 3x^2 + 6x at x = 3


def test_accumulation_without_and_with_zero(tmp_path):
    loop = """\
        import torch
        w = torch.tensor([1.], requires_grad=True)
        x = torch.tensor([2.], requires_grad=True)
        for i in range(4):
            a = torch.add(w, x)
            b = torch.add(w, 1)
            y = torch.mul(a, b)
            y.backward()
            {zero}
    """
    t, _ = run_snippet(tmp_path, loop.format(zero="pass"))
    assert [p.graph.find("w").grad_after.value[0] for p in t.passes] == [5.0, 10.0, 15.0, 20.0]
    assert [p.graph.find("w").grad_carried_over for p in t.passes] == [False, True, True, True]
    assert [p.graph.find("w").grad_before.value[0] for p in t.passes[1:]] == [5.0, 10.0, 15.0]
    t, _ = run_snippet(tmp_path, loop.format(zero="w.grad.zero_()"))
    assert [p.graph.find("w").grad_after.value[0] for p in t.passes] == [5.0] * 4
    assert [p.graph.find("w").grad_carried_over for p in t.passes] == [False] * 4
    assert [p.graph.find("w").grad_before.value[0] for p in t.passes[1:]] == [0.0] * 3


def test_parameter_and_module_names(tmp_path):
    t, lines = run_snippet(tmp_path, """\
        import torch
        import torch.nn as nn

        class LR(nn.Module):
            def __init__(self):
                super().__init__()
                self.features = nn.Linear(2, 1)
                self.sigmoid = nn.Sigmoid()

            def forward(self, x):
                x = self.features(x)
                x = self.sigmoid(x)
                return x

        net = LR()
        y_pred = net(torch.randn(8, 2))
        loss = nn.BCELoss()(y_pred.squeeze(), torch.ones(8))
        loss.backward()
    """)
    g = t.passes[0].graph
    weight, bias = g.find("features.weight"), g.find("features.bias")
    assert weight.is_parameter and bias.is_parameter and weight.shape == [1, 2]
    addmm = next(n for n in g.nodes if n.grad_fn == "AddmmBackward0")
    assert addmm.module == "features" and addmm.source.line == line_of(lines, "x = self.features(x)")
    sigmoid = next(n for n in g.nodes if n.grad_fn == "SigmoidBackward0")
    assert sigmoid.module == "sigmoid" and sigmoid.name == "x"
    bce = next(n for n in g.nodes if n.grad_fn == "BinaryCrossEntropyBackward0")
    assert bce.name == "loss" and bce.is_root
    assert weight.grad_after.shape == [1, 2] and weight.grad_after.norm > 0


def test_several_ops_on_one_line_name_only_the_last(tmp_path):
    t, lines = run_snippet(tmp_path, """\
        import torch
        w = torch.tensor([1.], requires_grad=True)
        x = torch.tensor([2.], requires_grad=True)
        y = (x + w) * (w + 1)
        y.backward()
    """)
    g = t.passes[0].graph
    assert g.find("y").op == "mul"
    adds = {n.name: n for n in g.nodes if n.op == "add"}
    assert set(adds) == {"add", "add_1"}  # numbered in forward order: x + w first, then w + 1
    assert {g.node(e.src).name for e in g.inputs_of(adds["add"].id)} == {"x", "w"}
    assert [g.node(e.src).name for e in g.inputs_of(adds["add_1"].id)] == ["w"]
    assert g.find("w").grad_after.value == [5.0]


def test_explicit_names():
    w = torch.ones(2, requires_grad=True)
    gradscope.name(w, "weights")
    h = gradscope.name(w * 2, "doubled")
    g = gradscope.graph(h.sum())
    assert g.find("weights").kind == "leaf" and g.find("doubled").op == "mul"


def test_graph_without_backward_and_deep_chain():
    w = torch.ones(1, requires_grad=True)
    y = w
    for _ in range(10_000):
        y = y * 1.0001
    g = gradscope.graph(y)
    assert len(g.nodes) == 10_001 and len(g.edges) == 10_000
    assert w.grad is None  # no backward ran
    nxg = g.to_networkx()
    assert nxg.number_of_nodes() == 10_001 and nxg.in_degree(g.roots[0].id) == 1


def test_to_networkx_keeps_attributes(tmp_path):
    t, _ = run_snippet(tmp_path, LESSON)
    g = t.passes[0].graph
    nxg = g.to_networkx()
    w_id = g.find("w").id
    assert nxg.nodes[w_id]["name"] == "w" and nxg.nodes[w_id]["grad_after"]["value"] == [5.0]
    assert nxg.edges[w_id, g.find("a").id]["index"] == 0


def test_save_and_load_round_trip(tmp_path):
    t, _ = run_snippet(tmp_path, LESSON)
    path = t.save(tmp_path / "trace.json")
    data = json.loads(path.read_text())
    assert data["format"] == "gradscope-trace" and data["version"] == 2
    loaded = gradscope.load(path)
    assert loaded.passes[0].graph.find("w").grad_after.value == [5.0]
    assert loaded.passes[0].graph.edge("a", "y").local == 2.0
    assert loaded.to_dict() == t.trace.to_dict()


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "invalid JSON"),
        ('{"hello": 1}', "not a gradscope trace"),
        ('{"format": "gradscope-trace", "version": 99}', "newer than this gradscope reads"),
        ('{"format": "gradscope-trace", "version": 1, "passes": [{"index": 0}]}', "malformed"),
        ("[1, 2]", "not a gradscope trace"),
    ],
)
def test_load_rejects_non_traces_with_one_clear_line(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(TraceFormatError, match=message) as info:
        gradscope.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(TraceFormatError, match="no such file"):
        gradscope.load(tmp_path / "nope.json")


def test_decorator_traces_each_call():
    tracer = gradscope.trace()

    @tracer
    def step(v):
        w = torch.tensor([v], requires_grad=True)
        (w * w).sum().backward()
        return w.grad.item()

    assert step(3.0) == 6.0
    assert tracer.passes[0].graph.leaves[0].grad_after.value == [6.0]
    assert step(4.0) == 8.0
    assert len(tracer.passes) == 1 and tracer.passes[0].graph.leaves[0].grad_after.value == [8.0]


def test_backward_inputs_argument_and_autograd_backward(tmp_path):
    t, _ = run_snippet(tmp_path, """\
        import torch
        w = torch.tensor([1.], requires_grad=True)
        x = torch.tensor([2.], requires_grad=True)
        y = w * x
        torch.autograd.backward(y, inputs=[w])
    """)
    p = t.passes[0]
    assert p.api == "torch.autograd.backward" and p.inputs == [p.graph.find("w").id]
    assert p.graph.find("w").grad_after.value == [2.0] and p.graph.find("x").grad_after is None


def test_backward_error_still_records_the_pass():
    t = gradscope.trace()
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        with t:
            w = torch.ones(2, requires_grad=True)
            v = w * 2
            v.backward()
    (p,) = t.passes
    assert p.error.startswith("RuntimeError: grad can be implicitly created only for scalar outputs")
    assert p.graph.find("v").is_root and p.graph.find("v").seed is None
    assert [e.kind for e in t.trace.events] == ["backward-error"]


@pytest.mark.parametrize("op", ["cat", "mm", "tanh", "sigmoid"])
def test_recorded_jacobians_equal_autograd_functional(op):
    torch.manual_seed(0)
    a = torch.randn(2, 3, requires_grad=True)
    b = torch.randn(3, 2, requires_grad=True) if op == "mm" else torch.randn(2, 3, requires_grad=True)
    fns = {
        "cat": lambda a, b: torch.cat([a, b]),
        "mm": torch.mm,
        "tanh": lambda a, b: torch.tanh(a),
        "sigmoid": lambda a, b: torch.sigmoid(a),
    }
    f = fns[op]
    with gradscope.trace() as t:
        out = f(a, b)
        out.backward(torch.ones_like(out))
    g = t.passes[0].graph
    root = g.roots[0]
    expected = torch.autograd.functional.jacobian(f, (a.detach(), b.detach()))
    for edge in g.inputs_of(root.id):
        leaf = g.node(edge.src)
        which = 0 if leaf.shape == list(a.shape) and edge.index == 0 else 1
        want = expected[which].reshape(out.numel(), -1)
        assert torch.allclose(torch.tensor(edge.local), want, atol=1e-6), (op, edge.index)


def test_multi_output_nodes_with_unused_outputs():
    torch.manual_seed(0)
    a = torch.randn(6, requires_grad=True)
    with gradscope.trace() as t:
        first, _, third = torch.split(a * 2, 2)
        rows = torch.unbind(a.view(2, 3))
        (first.sum() + third.prod() + rows[1].sum()).backward()
    g = t.passes[0].graph
    split = next(n for n in g.nodes if n.grad_fn.startswith("SplitBackward"))
    assert len(split.grad_outputs) == 3 and split.grad_outputs[1] is None
    edge = g.inputs_of(split.id)[0]
    assert len(edge.local) == 6 and len(edge.local[0]) == 6  # 6 outputs (3 pieces) x 6 inputs
    assert g.leaves[0].grad_after.value == a.grad.tolist()


def test_large_tensors_keep_statistics_not_values():
    w = torch.full((100, 100), 0.5, requires_grad=True)
    with gradscope.trace() as t:
        (w * 3).sum().backward()
    g = t.passes[0].graph
    (leaf,) = g.leaves
    assert leaf.value is None and leaf.grad_after.value is None and leaf.grad_after.shape == [100, 100]
    assert leaf.grad_after.norm == pytest.approx(300.0) and leaf.grad_after.max_abs == 3.0
    assert leaf.grad_after.mean == 3.0
    assert g.edge(leaf.id, next(n.id for n in g.nodes if n.op == "mul")).local is None


def test_nan_and_inf_are_counted():
    w = torch.tensor([0.0, 1.0, -1.0, 4.0], requires_grad=True)
    with gradscope.trace() as t:
        torch.log(w).sum().backward()  # d log(w)/dw = 1/w: inf at 0
        torch.sqrt(w).sum().backward()  # nan at -1 in the forward, inf grad at 0
    first = t.passes[0].graph.leaves[0]
    assert first.grad_after.inf == 1 and first.grad_after.nan == 0
    second = t.passes[1].graph.leaves[0]
    assert second.grad_after.nan == 1


def test_no_gradients_option_records_graph_only(tmp_path):
    t, _ = run_snippet(tmp_path, LESSON, gradients="off")
    g = t.passes[0].graph
    assert g.edge("a", "y").grad is None and g.edge("a", "y").local is None
    assert g.find("w").grad_after.value == [5.0]  # .grad before/after is still shown


def test_no_gradients_option_describes_large_grads_by_the_leaf():
    """Without statistics a large .grad's summary comes from its leaf (no look at the tensor):
    it must still say what the tensor is, and only where .grad exists."""
    layer = nn.Linear(30, 20).double()
    unused = gradscope.name(nn.Parameter(torch.zeros(40)), "unused")
    with gradscope.trace(gradients="off") as t:
        (layer(torch.ones(2, 30, dtype=torch.float64)).sum() + 0 * unused.sum()).backward()
        layer.weight.grad = None
        layer(torch.ones(2, 30, dtype=torch.float64)).sum().backward()
    first = t.passes[0].graph.find("weight")
    assert (first.grad_after.shape, first.grad_after.dtype, first.grad_after.device) == ([20, 30], "float64", "cpu")
    assert first.grad_after.norm is None and first.grad_after.value is None
    assert t.passes[0].graph.find("bias").grad_after.value is None  # 20 elements: over the value limit
    assert t.passes[0].graph.find("unused").grad_after.shape == [40]  # a gradient of zeros is still one
    second = t.passes[1].graph
    assert second.find("weight").grad_before is None  # set to None between the passes
    assert second.find("bias").grad_before.shape == [20]
    assert layer.weight.grad.shape == (20, 30)

def test_values_option_keeps_larger_tensors():
    w = torch.arange(100.0, requires_grad=True)
    with gradscope.trace(gradients="values", values=200) as t:
        (w * 2).sum().backward()
    assert t.passes[0].graph.leaves[0].grad_after.value == [2.0] * 100


def test_jacobian_limit():
    w = torch.arange(4.0, requires_grad=True)
    with gradscope.trace(jacobian=3) as t:
        (w * w).sum().backward()
    g = t.passes[0].graph
    mul = next(n for n in g.nodes if n.op == "mul")
    assert all(e.local is None for e in g.inputs_of(mul.id))  # 4 elements > 3
    summ = g.roots[0]
    assert g.inputs_of(summ.id)[0].local is None  # input of 4 elements > 3


def test_custom_function_and_checkpoint_are_never_called():
    calls = []

    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            calls.append(1)
            (x,) = ctx.saved_tensors
            return 2 * x * grad

    x = torch.tensor([3.0], requires_grad=True)
    with gradscope.trace() as t:
        Square.apply(x).backward()
    assert calls == [1]  # only the engine's own call
    g = t.passes[0].graph
    assert g.roots[0].grad_fn == "SquareBackward" and g.edges[0].local is None
    assert g.leaves[0].grad_after.value == [6.0]


def test_leaf_grad_after_respects_gradient_hooks():
    """A hook that rescales a leaf's gradient changes .grad, not the edge: both are shown as they are."""
    w = torch.full((32,), 2.0, requires_grad=True)
    w.register_hook(lambda g: g * 10)
    with gradscope.trace() as t:
        (w * 3).sum().backward()
    g = t.passes[0].graph
    (leaf,) = g.leaves
    assert g.inputs_of(g.roots[0].id)[0].grad.max_abs == 1.0
    assert g.edge(leaf.id, next(n.id for n in g.nodes if n.op == "mul")).grad.mean == 3.0
    assert leaf.grad_after.mean == 30.0 and w.grad[0].item() == 30.0


def test_leaves_made_before_the_trace_are_named_by_the_line_that_uses_them():
    w = torch.tensor([1.0], requires_grad=True)
    x = torch.tensor([2.0], requires_grad=True)
    s = torch.tensor([3.0], requires_grad=True)
    u = torch.tensor([4.0], requires_grad=True)
    k = 2.0
    with gradscope.trace() as t:
        a = torch.add(w, x)
        b = w.add(1)
        c = k * s  # runs as s.mul(k): input 0 is s, not k, and the line cannot tell
        d = 3 * u  # ... but a literal can only be the number
        y = torch.mul(a, b) + c + d
        y.backward()
    g = t.passes[0].graph
    assert sorted(n.name for n in g.leaves) == ["leaf", "u", "w", "x"]
    assert g.find("w").grad_after.value == [5.0] and g.find("u").grad_after.value == [3.0]


@pytest.mark.parametrize(
    "code, op, index, tensor_args, expected",
    [
        ("a = torch.add(w, x)", "add", 1, 2, "x"),
        ("b = w.add(1)", "add", 0, 1, "w"),
        ("y = (x + w) * (w + 1)", "add", 0, 2, None),  # two adds: ambiguous
        ("c = x * w", "mul", 1, 2, "w"),
        ("c = k * s", "mul", 0, 1, None),  # k may be a number: s.mul(k)
        ("c = 2 * s", "mul", 0, 1, "s"),
        ("h = F.linear(inp, weight)", "linear", 1, 2, "weight"),
        ("z = torch.mul(a[0], b)", "mul", 0, 2, None),  # not a plain name
        ("for i in range(3):", "add", 0, 1, None),
    ],
)
def test_argument_names(code, op, index, tensor_args, expected):
    from gradscope.capture.argnames import argument_name

    assert argument_name(code, op, index, tensor_args) == expected


def test_submodule_called_alone_first_is_named_by_its_parent():
    model = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1))
    with gradscope.trace() as t:
        model[2](torch.ones(1, 2)).sum().backward()
        model(torch.ones(1, 2)).sum().backward()
    first, second = t.passes
    assert {n.name for n in first.graph.leaves} == {"2.weight", "2.bias"}  # its parent is found
    assert {n.name for n in second.graph.leaves} == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert {n.module for n in second.graph.nodes if n.op == "linear"} == {"0", "2"}


MODULES_AND_CALLBACKS = """\
    import torch
    import torch.nn as nn

    def gelu_ish(h):
        return h * torch.sigmoid(1.7 * h)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
            self.layer = nn.TransformerEncoderLayer(4, 1, 8, dropout=0.0, activation=gelu_ish,
                                                    batch_first=True)

        def forward(self, x):
            h = self.inner(x)
            h = h + torch.relu(h)
            return self.layer(h.unsqueeze(0)).squeeze(0)

    torch.manual_seed(0)
    model = nn.Sequential(Block(), nn.Linear(4, 1))
    loss = model(torch.randn(3, 4)).sum()
    loss.backward()
"""


def test_lines_inside_modules_and_callbacks(tmp_path):
    """Ops find the innermost user line: torch modules in user modules in torch modules, and
    a user function called back from inside a torch module."""
    t, lines = run_snippet(tmp_path, MODULES_AND_CALLBACKS)
    sources = [(n.op, n.module, n.source.line if n.source else None) for n in t.passes[0].graph.nodes]
    found = {(op, line) for op, _, line in sources}
    assert ("sigmoid", line_of(lines, "torch.sigmoid(1.7 * h)")) in found  # the callback's own line
    assert ("linear", line_of(lines, "h = self.inner(x)")) in found
    assert ("relu", line_of(lines, "h + torch.relu(h)")) in found
    assert ("linear", line_of(lines, "loss = model(")) in found  # the last Linear, called by Sequential


def test_single_edge_leaf_accumulates_too():
    """x feeds one op only: its .grad after each pass is still the accumulated sum."""
    with gradscope.trace() as t:
        w = torch.tensor([1.0], requires_grad=True)
        x = torch.tensor([2.0], requires_grad=True)
        for _ in range(3):
            torch.mul(torch.add(w, x), torch.add(w, 1)).backward()
    assert [p.graph.find("x").grad_after.value for p in t.passes] == [[2.0], [4.0], [6.0]]
    assert [p.graph.find("x").grad_carried_over for p in t.passes] == [False, True, True]


def test_passes_read_inside_the_block_are_complete():
    with gradscope.trace() as t:
        w = torch.tensor([1.0, 2.0], requires_grad=True)
        (w * w).sum().backward()
        assert t.passes[0].graph.find("w").grad_after.value == [2.0, 4.0]


@pytest.mark.parametrize("view", ["transposed", "permuted", "strided", "float16", "complex"])
def test_statistics_of_large_cpu_tensors_in_any_layout(view):
    """Dense views are reduced over their memory in order, others copied: the same numbers."""
    from gradscope.capture import summaries

    torch.manual_seed(0)
    base = torch.randn(64, 48, 4)
    t = {"transposed": base[:, :, 0].t(), "permuted": base.permute(2, 0, 1),
         "strided": base[:, ::2, 1:3], "float16": base.half().transpose(0, 1),
         "complex": torch.complex(base, -base).transpose(0, 2)}[view]
    batch = summaries.PendingBatch(summaries.SummaryOptions())
    s, light = batch.summarize(t).result, batch.summarize(t, norm_only=True).result
    magnitude = t.abs().double()
    assert s.norm == pytest.approx(float(torch.linalg.vector_norm(magnitude)), rel=1e-5)
    assert s.max_abs == pytest.approx(float(magnitude.max()))
    assert s.mean == pytest.approx(float(magnitude.mean() if t.is_complex() else t.double().mean()), abs=1e-6)
    assert (s.nan, s.inf, s.counts_exact, s.shape) == (0, 0, True, list(t.shape))
    assert (light.norm, light.max_abs, light.mean) == (pytest.approx(s.norm), None, None)


def test_cpu_statistics_count_nan_and_inf_and_survive_overflow():
    from gradscope.capture import summaries

    batch = summaries.PendingBatch(summaries.SummaryOptions())
    t = torch.ones(40, 30)
    t[1, 2], t[3, 4], t[5, 6] = float("nan"), float("inf"), -float("inf")
    s = batch.summarize(t.t()).result
    assert (s.nan, s.inf) == (1, 2)
    huge = torch.full((100,), 3e20)  # its square overflows float32, its norm does not
    assert batch.summarize(huge).result.norm == pytest.approx(3e21, rel=1e-5)


def test_accelerator_statistics_flag_nan_and_inf_without_counting(monkeypatch):
    """On a GPU large tensors keep their reductions on the device, small ones a copy, and
    all of a pass's numbers reach the host in one transfer; NaN/Inf presence is read from
    the statistics there. Exercised here by running that path on CPU tensors."""
    from gradscope.capture import summaries

    monkeypatch.setattr(summaries, "_on_host", lambda t: False)
    batch = summaries.PendingBatch(summaries.SummaryOptions())
    clean = torch.arange(100.0).reshape(10, 10).t()  # dense, not contiguous
    with_nan, with_inf = clean.clone(), clean.clone().half()
    with_nan[3, 0], with_inf[5, 1] = float("nan"), float("inf")
    pending = [batch.summarize(t) for t in (clean, with_nan, with_inf)]
    light = [batch.summarize(t, norm_only=True) for t in (clean, with_nan, with_inf)]
    small = batch.summarize(torch.tensor([[1.0, -2.0]]))
    box = batch.keep(torch.tensor([3.0, 4.0]))
    assert all(p.result is None for p in pending + light + [small]) and box.value is None  # queued
    batch.start_transfer()
    batch.resolve()
    a, b, c = (p.result for p in pending)
    assert (a.max_abs, a.mean, a.nan, a.inf, a.counts_exact) == (99.0, 49.5, 0, 0, False)
    assert a.norm == pytest.approx(float(torch.linalg.vector_norm(clean)))
    assert (b.nan, b.inf) == (1, 0) and (c.nan, c.inf) == (0, 1) and c.dtype == "float16"
    la, lb, lc = (p.result for p in light)
    assert (la.norm, la.max_abs, la.mean) == (pytest.approx(a.norm), None, None)
    assert (lb.nan, lb.inf, lc.nan, lc.inf) == (1, 0, 0, 1)
    assert small.result.value == [[1.0, -2.0]] and small.result.max_abs == 2.0
    assert box.value == [3.0, 4.0]


def test_repeated_big_graphs_record_edge_gradients_on_a_sample_of_passes():
    w = torch.ones(300, 300, requires_grad=True)  # 90,000 elements: worth sampling
    with gradscope.trace() as t:
        for _ in range(25):
            (w * 3).sum().backward()
    full = [p.index for p in t.passes if p.edge_gradients]
    assert full == [0, 1, 2, 10, 20]
    assert all(p.graph.edges[0].grad is not None for p in t.passes if p.edge_gradients)
    assert all(p.graph.edges[0].grad is None for p in t.passes if not p.edge_gradients)
    # the leaves' .grad is recorded on every pass: its norm always, its mean on full passes
    after = [p.graph.find("w").grad_after for p in t.passes]
    assert [g.norm for g in after] == pytest.approx([3.0 * (i + 1) * 300 for i in range(25)], rel=1e-4)
    assert [g.mean for g in after] == [3.0 * (i + 1) if i in full else None for i in range(25)]
    assert all(g.finite for g in after)
    with gradscope.trace(every=1) as t:
        for _ in range(5):
            (w * 3).sum().backward()
    assert all(p.edge_gradients for p in t.passes)


def test_passes_without_edge_gradients_share_their_edges_and_only_those():
    """Quiet passes of one wiring share Edge objects (nothing per pass is on them); a full
    pass gets its own, so its gradients never show on another pass."""
    w = torch.ones(300, 300, requires_grad=True)
    with gradscope.trace() as t:
        for i in range(12):
            ((w * 3).sum() if i != 7 else (w * 3).mean()).backward()  # pass 7 is wired otherwise
    p = t.passes
    assert [q.index for q in p if q.edge_gradients] == [0, 1, 2, 7, 11]  # 11: the sum's 10th
    for q in p:  # every edge of a full pass has its gradient, no edge of a quiet pass has one
        assert all((e.grad is not None) == q.edge_gradients for e in q.graph.edges), q.index
    assert all(a is b for a, b in zip(p[3].graph.edges, p[6].graph.edges))
    assert p[3].graph.edges is not p[6].graph.edges  # the lists are each pass's own
    assert not any(a is b for a, b in zip(p[2].graph.edges, p[3].graph.edges))
    assert not any(a is b for a, b in zip(p[10].graph.edges, p[11].graph.edges))
    assert [(e.src, e.dst, e.index) for e in p[10].graph.edges] == [(e.src, e.dst, e.index) for e in p[11].graph.edges]
    layer = nn.Linear(4, 4)
    with gradscope.trace(gradients="off") as t:
        for _ in range(3):
            layer(torch.ones(1, 4)).sum().backward()
        layer(torch.ones(1, 4)).relu().sum().backward()  # one more node: other wiring
        layer(torch.ones(1, 4)).sum().backward()
        drawn = gradscope.graph(layer(torch.ones(1, 4)).sum())  # wired as the passes, but not a pass
    graphs = [q.graph for q in t.passes]
    assert not any(a is b for a, b in zip(graphs[2].edges, graphs[4].edges))  # pass 3 came between
    assert not any(a is b for q in graphs for a, b in zip(q.edges, drawn.edges))
    assert all(a is b for a, b in zip(graphs[0].edges, graphs[2].edges))
    assert len(graphs[3].edges) == len(graphs[2].edges) + 1
    assert not any(a is b for a, b in zip(graphs[2].edges, graphs[3].edges))


def test_small_graphs_are_recorded_in_full_on_every_pass():
    w = torch.tensor([1.0], requires_grad=True)
    with gradscope.trace() as t:
        for _ in range(12):
            (w * 3).sum().backward()
    assert all(p.edge_gradients for p in t.passes)


def test_a_nonfinite_gradient_makes_the_next_pass_full():
    w = torch.ones(300, 300, requires_grad=True)
    with gradscope.trace() as t:
        for i in range(8):
            (w * (float("nan") if i == 5 else 1.0)).sum().backward()
    # w.grad is NaN from pass 5 on (it accumulates), so each pass after it is recorded in full
    assert [p.index for p in t.passes if p.edge_gradients] == [0, 1, 2, 6, 7]


def test_small_roots_and_ops_keep_their_value(tmp_path):
    t, _ = run_snippet(tmp_path, LESSON)
    g = t.passes[0].graph
    assert g.find("y").value == [6.0]  # (x + w)(w + 1) = 3 * 2
    assert g.find("a").value == [3.0] and g.find("b").value == [2.0]  # so dy/da = b = 2 reads off b


def test_op_values_are_never_stale():
    """An op output edited in place since, or freed, shows no value; each repeat of a
    loop's graph shows its own."""
    w = torch.tensor([1.0], requires_grad=True)
    with gradscope.trace() as t:
        for i in range(3):
            a = gradscope.name(w * (i + 1), "a")
            b = gradscope.name(a + 0, "b")
            b.mul_(1)  # b's own node now holds an edited output: no value for it
            (b * (w + 1)).sum().backward()
    assert [p.graph.find("a").value for p in t.passes] == [[1.0], [2.0], [3.0]]
    assert all(p.graph.find("b").value is None for p in t.passes)
    # w + 1 lives on inside mul's saved tensors: its value, when shown, is its own
    assert {str(n.value) for p in t.passes for n in p.graph.nodes if n.op == "add" and n.name != "b"} <= {"[2.0]", "None"}


def test_grad_after_under_ddp_is_what_lands_in_grad(tmp_path):
    """DDP rewrites .grad from its own hooks (here a communication hook that doubles it):
    the leaf's .grad after the pass is read from .grad, not assumed from the edge."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = torch.nn.parallel.DistributedDataParallel(nn.Linear(4, 1, bias=False))

        def double(state, bucket):
            fut = torch.futures.Future()
            fut.set_result(bucket.buffer() * 2)
            return fut

        model.register_comm_hook(None, double)
        with gradscope.trace() as t:
            model(torch.ones(2, 4)).sum().backward()
        weight = model.module.weight
        leaf = t.passes[0].graph.find("module.weight")
        assert leaf.grad_after.value == weight.grad.tolist() == [[4.0, 4.0, 4.0, 4.0]]
    finally:
        dist.destroy_process_group()
