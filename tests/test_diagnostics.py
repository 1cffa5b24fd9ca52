"""Diagnostics: each autograd mistake is flagged with its code and the user's lines, and the
correct version of the same code is not. Real torch, real scripts written to a temp file
(so line numbers and code text are the user's), nothing mocked.

A zoo of correct programs (the lesson, logistic regression, an MLP, a CNN with in-place
ReLU, custom Functions, checkpoint, shared weights, second order, torch.compile) must give
no warning and no error. Re-diagnosing a saved trace gives the same diagnostics.
"""

from __future__ import annotations

import runpy
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import gradscope
from gradscope.diagnostics import CODES, diagnose

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


class Snippet:
    """A script written to a file and run under gradscope.trace(); `line(text)` finds lines."""

    def __init__(self, tmp_path: Path, code: str, name: str = "snippet.py"):
        self.code = textwrap.dedent(code).strip("\n") + "\n"
        self.path = tmp_path / name
        self.path.write_text(self.code)
        self.trace: gradscope.Trace | None = None
        self.namespace: dict = {}

    def run(self, raises: type[BaseException] | None = None, match: str | None = None) -> "Snippet":
        with gradscope.trace() as t:
            if raises is None:
                self.namespace = runpy.run_path(str(self.path), run_name="__main__")
            else:
                with pytest.raises(raises, match=match):
                    runpy.run_path(str(self.path), run_name="__main__")
        self.trace = t.trace
        return self

    def line(self, text: str) -> int:
        hits = [i for i, code in enumerate(self.code.splitlines(), 1) if text in code]
        assert len(hits) == 1, f"{text!r} is on lines {hits}"
        return hits[0]

    @property
    def diagnostics(self) -> list[gradscope.Diagnostic]:
        return self.trace.diagnostics

    def codes(self, *severities: str) -> list[str]:
        return [d.code for d in self.diagnostics if not severities or d.severity in severities]

    def only(self, code: str) -> gradscope.Diagnostic:
        found = [d for d in self.diagnostics if d.code == code]
        assert len(found) == 1, f"{code}: {[(d.code, d.title) for d in self.diagnostics]}"
        return found[0]


def run(tmp_path, code, raises=None, match=None) -> Snippet:
    return Snippet(tmp_path, code).run(raises, match)


def lines(d: gradscope.Diagnostic) -> list[int]:
    return [s.line for s in d.sources]


def problems(s: Snippet) -> list[tuple[str, str]]:
    """Warnings and errors: what a correct program must not get."""
    return [(d.code, d.title) for d in s.diagnostics if d.severity in ("error", "warning")]


def assert_explained(d: gradscope.Diagnostic) -> None:
    assert d.code in CODES and d.severity in ("error", "warning", "info")
    assert d.title and "\n" not in d.title
    assert d.message and d.hint
    assert all(s.file and s.line > 0 for s in d.sources)


# -- 1. leaf-inplace ----------------------------------------------------------------------------
LEAF_EDITS = {
    "add_": "w.add_(1)",
    "iadd": "w += 1",
    "setitem": "w[0] = 5",
    "copy_": "w.copy_(torch.zeros(2))",
    "view": "w.view(-1).mul_(2)",
}


@pytest.mark.parametrize("edit", LEAF_EDITS.values(), ids=LEAF_EDITS.keys())
def test_leaf_inplace(tmp_path, edit):
    s = run(tmp_path, f"""
        import torch
        w = torch.tensor([1., 2.], requires_grad=True)
        x = torch.tensor([3., 4.])
        y = (w * x).sum()
        {edit}
        y.backward()
    """, raises=RuntimeError, match="leaf Variable that requires grad")
    d = s.only("leaf-inplace")
    assert_explained(d)
    assert d.severity == "error" and d.pass_index is None
    assert lines(d)[0] == s.line(edit)
    assert s.line("y = (w * x)") in lines(d)  # the op that read w's old value
    assert "`w`" in d.title and "torch.no_grad()" in d.hint and "clone" in d.hint
    event = next(e for e in s.trace.events if e.kind == "leaf-inplace-error")
    assert d.nodes == [event.graph.find("w").id]


def test_leaf_inplace_lesson_example():
    with gradscope.trace() as t, pytest.raises(RuntimeError):
        _run_example("leaf_inplace")
    (d,) = t.diagnostics
    assert d.code == "leaf-inplace" and d.sources[0].line == _example_line("leaf_inplace", "w.add_(1)")


def test_leaf_update_under_no_grad_is_fine(tmp_path):
    s = run(tmp_path, """
        import torch
        w = torch.tensor([1., 2.], requires_grad=True)
        for step in range(3):
            loss = (w * w).sum()
            loss.backward()
            with torch.no_grad():
                w -= 0.1 * w.grad
                w[0] = w[0].clamp(-1, 1)
            w.grad = None
    """)
    assert problems(s) == []


# -- 2. saved-tensor-modified -------------------------------------------------------------------
def test_saved_input_modified(tmp_path):
    """exp runs (and frees what it saved) before sin fails: only the edit is reported."""
    s = run(tmp_path, """
        import torch
        w = torch.tensor([1., 2.], requires_grad=True)
        y = w * 2
        z = torch.sin(y)
        y.add_(1)
        z.exp().sum().backward()
    """, raises=RuntimeError, match="modified by an inplace operation")
    d = s.only("saved-tensor-modified")
    assert_explained(d)
    assert d.severity == "error" and d.pass_index == 0
    assert lines(d) == [s.line("z = torch.sin(y)"), s.line("y.add_(1)")]
    assert s.trace.passes[0].graph.node(d.nodes[0]).op == "sin"
    assert s.codes() == ["saved-tensor-modified"]
    assert "freed-graph-reused" not in [e.kind for e in s.trace.events]


def test_saved_output_modified(tmp_path):
    """sigmoid saves its output; `y.mul_(2)` changes it (found from the in-place node)."""
    s = run(tmp_path, """
        import torch
        w = torch.tensor([1., 2.], requires_grad=True)
        y = torch.sigmoid(w * 3)
        y.mul_(2)
        y.sum().backward()
    """, raises=RuntimeError, match="modified by an inplace operation")
    d = s.only("saved-tensor-modified")
    assert lines(d) == [s.line("torch.sigmoid"), s.line("y.mul_(2)")]
    assert "output" in d.message


def test_saved_tensor_modified_through_a_view_and_under_no_grad(tmp_path):
    s = run(tmp_path, """
        import torch
        w = torch.tensor([1., 2., 3.], requires_grad=True)
        h = w * 1.5
        loss = (h * h).sum()
        with torch.no_grad():
            h[1:].mul_(2)
        loss.backward()
    """, raises=RuntimeError, match="modified by an inplace operation")
    d = s.only("saved-tensor-modified")
    assert lines(d) == [s.line("loss = (h * h)"), s.line("h[1:].mul_(2)")]


def test_relu_inplace_after_sigmoid(tmp_path):
    s = run(tmp_path, """
        import torch
        net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Sigmoid(), torch.nn.ReLU(inplace=True))
        loss = net(torch.ones(2, 3)).sum()
        loss.backward()
    """, raises=RuntimeError, match="modified by an inplace operation")
    d = s.only("saved-tensor-modified")
    assert "inplace=False" in d.hint
    assert d.sources[0].line == s.line("loss = net(")  # both ops run inside the model's call


def test_saved_tensor_modified_through_data(tmp_path):
    """`.data` has its own version counter: PyTorch sees nothing and the gradient is wrong."""
    s = run(tmp_path, """
        import torch
        w = torch.tensor([1., 2.], requires_grad=True)
        x = torch.tensor([3., 4.], requires_grad=True)
        y = (w * x).sum()
        w.data.mul_(2)
        y.backward()
    """)
    assert s.namespace["x"].grad.tolist() == [2.0, 4.0]  # wrong: d(w*x)/dx is the old w = [1, 2]
    d = s.only("saved-tensor-modified")
    assert_explained(d)
    assert lines(d) == [s.line("y = (w * x)"), s.line("w.data.mul_(2)")]
    assert "silently wrong" in d.message and d.pass_index == 0


def test_data_edit_of_an_unsaved_tensor_is_fine(tmp_path):
    """mul by a constant saves only the constant: editing w through .data changes nothing."""
    s = run(tmp_path, """
        import torch
        w = torch.tensor([1., 2.], requires_grad=True)
        y = (w * 3).sum()
        w.data.mul_(2)
        y.backward()
    """)
    assert problems(s) == []


def test_data_edit_before_the_forward_is_fine(tmp_path):
    s = run(tmp_path, """
        import torch
        w = torch.tensor([1., 2.], requires_grad=True)
        for step in range(3):
            loss = (w * w).sum()
            loss.backward()
            w.data -= 0.1 * w.grad
            w.grad.zero_()
    """)
    assert problems(s) == []


def test_inplace_on_unsaved_nonleaf_is_fine(tmp_path):
    s = run(tmp_path, """
        import torch
        x = torch.tensor([1., 2.], requires_grad=True)
        y = x * 2
        y.add_(1)
        y[0] = 0
        z = torch.exp(x)
        z2 = z + 1
        z2.mul_(3)
        (y.sum() + z2.sum()).backward()
    """)
    assert problems(s) == []
    assert s.namespace["x"].grad.tolist() == pytest.approx([3 * 2.718281828, 2 + 3 * 7.389056])


# -- 3. grad-accumulation -----------------------------------------------------------------------
def test_lesson_accumulation_loop_warns():
    with gradscope.trace() as t:
        _run_example("grad_accumulation")
    (d,) = t.diagnostics
    assert d.code == "grad-accumulation" and d.severity == "warning"
    assert "5 → 10 → 15 → 20" in d.message
    assert d.sources[0].line == _example_line("grad_accumulation", "y.backward()")
    assert d.pass_index == 3 and {t.passes[3].graph.node(n).name for n in d.nodes} == {"w", "x"}


def test_lesson_accumulation_loop_with_zero_grad_is_fine():
    with gradscope.trace() as t:
        _run_example("grad_accumulation", "--zero-grad")
    assert t.diagnostics == []


TRAIN = """
    import torch
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = [(torch.randn(6, 4), torch.randn(6, 1)) for _ in range(5)]
    for x, y in data:
        {top}
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        {bottom}
"""


def test_missing_zero_grad_warns(tmp_path):
    s = Snippet(tmp_path, TRAIN.format(top="pass", bottom="pass")).run()
    d = s.only("grad-accumulation")
    assert_explained(d)
    assert d.severity == "warning" and d.pass_index == 1
    assert lines(d) == [s.line("loss.backward()"), s.line("opt.step()")]
    assert "zero_grad" in d.hint
    assert sorted(s.trace.passes[1].graph.node(n).name for n in d.nodes) == ["0.bias", "0.weight", "2.bias", "2.weight"]


@pytest.mark.parametrize("where_", ["top", "bottom"])
@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_anywhere_is_fine(tmp_path, where_, set_to_none):
    zero = f"opt.zero_grad(set_to_none={set_to_none})"
    code = TRAIN.format(top=zero if where_ == "top" else "pass", bottom=zero if where_ == "bottom" else "pass")
    s = Snippet(tmp_path, code).run()
    assert s.diagnostics == []


def test_micro_batching_is_info_at_most(tmp_path):
    s = run(tmp_path, """
        import torch
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        for i in range(8):
            loss = model(torch.randn(3, 4)).pow(2).mean() / 4
            loss.backward()
            if i % 4 == 3:
                opt.step()
                opt.zero_grad()
    """)
    assert problems(s) == []
    d = s.only("grad-accumulation")
    assert d.severity == "info" and "4 backward passes" in d.title
    assert lines(d) == [s.line("loss.backward()"), s.line("opt.step()")]


def test_micro_batching_without_zero_after_the_step_warns(tmp_path):
    s = run(tmp_path, """
        import torch
        model = torch.nn.Linear(4, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for i in range(8):
            loss = model(torch.randn(3, 4)).pow(2).mean()
            loss.backward()
            if i % 2 == 1:
                opt.step()
    """)
    assert s.codes("warning") == ["grad-accumulation"] and s.codes("info") == ["grad-accumulation"]
    (d,) = [d for d in s.diagnostics if d.severity == "warning"]
    assert d.pass_index == 2 and lines(d) == [s.line("loss.backward()"), s.line("opt.step()")]


def test_manual_sgd_without_zero_warns_and_with_zero_is_fine(tmp_path):
    code = """
        import torch
        w = torch.tensor([1., -2.], requires_grad=True)
        for step in range(3):
            loss = (w * w).sum()
            loss.backward()
            with torch.no_grad():
                w -= 0.1 * w.grad
            {zero}
    """
    s = Snippet(tmp_path, code.format(zero="pass")).run()
    d = s.only("grad-accumulation")
    assert d.severity == "warning" and lines(d) == [s.line("loss.backward()"), s.line("w -= 0.1")]
    s = Snippet(tmp_path, code.format(zero="w.grad.zero_()"), "fixed.py").run()
    assert s.diagnostics == []


def test_optimizer_step_in_no_grad_and_gan_style_steps_are_fine(tmp_path):
    """Two models, two optimizers: G's backward also fills D's .grad, which D's zero_grad clears."""
    s = run(tmp_path, """
        import torch
        G = torch.nn.Linear(2, 2)
        D = torch.nn.Linear(2, 1)
        opt_g = torch.optim.SGD(G.parameters(), lr=0.1)
        opt_d = torch.optim.SGD(D.parameters(), lr=0.1)
        for step in range(3):
            z = torch.randn(4, 2)
            fake = G(z)
            opt_d.zero_grad()
            d_loss = D(fake.detach()).mean() - D(torch.randn(4, 2)).mean()
            d_loss.backward()
            with torch.no_grad():
                opt_d.step()
            opt_g.zero_grad()
            g_loss = -D(fake).mean()
            g_loss.backward()
            opt_g.step()
    """)
    assert problems(s) == []


def test_two_losses_one_step_are_fine(tmp_path):
    s = run(tmp_path, """
        import torch
        model = torch.nn.Linear(3, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(3):
            opt.zero_grad()
            out = model(torch.randn(5, 3))
            loss_a = out[:, 0].pow(2).mean()
            loss_b = out[:, 1].abs().mean()
            loss_a.backward(retain_graph=True)
            loss_b.backward()
            opt.step()
    """)
    assert problems(s) == []


# -- 4. backward-twice --------------------------------------------------------------------------
def test_backward_twice(tmp_path):
    s = run(tmp_path, """
        import torch
        w = torch.tensor([1., 2.], requires_grad=True)
        loss = (w * w).sum()
        loss.backward()
        loss.backward()
    """, raises=RuntimeError, match="second time")
    d = s.only("backward-twice")
    assert_explained(d)
    lines_ = [n for n, text in enumerate(s.code.splitlines(), 1) if "loss.backward()" in text]
    assert lines(d) == [lines_[1], lines_[0]] and d.pass_index == 1
    assert "retain_graph=True" in d.hint and d.nodes


def test_backward_twice_with_retain_graph_is_fine(tmp_path):
    s = run(tmp_path, """
        import torch
        w = torch.tensor([1., 2.], requires_grad=True)
        loss = (w * w).sum()
        loss.backward(retain_graph=True)
        loss.backward()
    """)
    assert problems(s) == []


def test_hidden_state_carried_across_iterations(tmp_path):
    s = run(tmp_path, """
        import torch
        W = torch.full((3, 3), 0.1, requires_grad=True)
        h = torch.zeros(3)
        for x in torch.ones(4, 3):
            h = torch.tanh(W @ h + x)
            loss = h.sum()
            loss.backward()
    """, raises=RuntimeError, match="second time")
    d = s.only("backward-twice")
    assert lines(d) == [s.line("loss.backward()"), s.line("h = torch.tanh")]
    assert "h = h.detach()" in d.hint and "retain_graph=True" in d.hint
    assert s.trace.passes[1].graph.node(d.nodes[0]).name == "h"


def test_hidden_state_detached_is_fine(tmp_path):
    s = run(tmp_path, """
        import torch
        W = torch.full((3, 3), 0.1, requires_grad=True)
        h = torch.zeros(3)
        for x in torch.ones(4, 3):
            h = torch.tanh(W @ h.detach() + x)
            loss = h.sum()
            loss.backward()
            W.grad = None
    """)
    assert problems(s) == []


# -- 5. nonleaf-grad ----------------------------------------------------------------------------
def test_nonleaf_grad(tmp_path):
    s = run(tmp_path, """
        import warnings
        import torch
        warnings.simplefilter("ignore")
        w = torch.tensor([1., 2.], requires_grad=True)
        y = w * 2
        y.sum().backward()
        for i in range(2):
            print(y.grad)
    """)
    d = s.only("nonleaf-grad")
    assert_explained(d)
    assert d.severity == "warning"
    assert lines(d) == [s.line("print(y.grad)"), s.line("y = w * 2")]
    assert "`y.retain_grad()`" in d.hint and "2 reads" in d.message
    assert d.pass_index == 0 and s.trace.passes[0].graph.node(d.nodes[0]).name == "y"


def test_retained_and_leaf_grads_are_fine(tmp_path):
    s = run(tmp_path, """
        import torch
        w = torch.tensor([1., 2.], requires_grad=True)
        y = w * 2
        y.retain_grad()
        y.sum().backward()
        print(y.grad, w.grad)
    """)
    assert problems(s) == []


# -- 6. no-gradient -----------------------------------------------------------------------------
NO_GRAD_MODEL = """
    import torch
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(3, 4)
            self.head = torch.nn.Linear(4, 1)
        def forward(self, x):
            h = {body}
            return self.head(h)
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for step in range(3):
        opt.zero_grad()
        loss = net(torch.randn(2, 3)).sum()
        loss.backward()
        opt.step()
"""


def test_no_gradient_through_detach(tmp_path):
    s = Snippet(tmp_path, NO_GRAD_MODEL.format(body="self.body(x).detach()")).run()
    d = s.only("no-gradient")
    assert_explained(d)
    assert d.severity == "warning" and d.pass_index == 0
    assert lines(d) == [s.line("h = self.body(x)"), s.line("loss.backward()")]
    assert "`body.weight`" in d.title and "`body.bias`" in d.title and "3 passes" in d.title
    assert "detach" in d.message


def test_no_gradient_under_no_grad(tmp_path):
    code = NO_GRAD_MODEL.replace("h = {body}", "with torch.no_grad():\n                h = self.body(x)")
    s = Snippet(tmp_path, code).run()
    d = s.only("no-gradient")
    assert lines(d)[0] == s.line("h = self.body(x)")
    assert "no_grad" in d.message


def test_no_gradient_unused_module(tmp_path):
    code = NO_GRAD_MODEL.replace("h = {body}", "self.body(x)\n            h = torch.ones(x.shape[0], 4)")
    s = Snippet(tmp_path, code).run()
    d = s.only("no-gradient")
    assert lines(d) == [s.line("loss.backward()")] and "unused" in d.message


def test_no_gradient_plain_leaf_detached(tmp_path):
    s = run(tmp_path, """
        import torch
        w = torch.ones(3, requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        x = torch.randn(5, 3)
        loss = (x @ w + b.detach()).pow(2).mean()
        loss.backward()
    """)
    d = s.only("no-gradient")
    assert "`b`" in d.title and lines(d) == [s.line("loss = (x @ w"), s.line("loss.backward()")]


def test_every_parameter_used_is_fine(tmp_path):
    s = Snippet(tmp_path, NO_GRAD_MODEL.format(body="torch.relu(self.body(x))")).run()
    assert s.diagnostics == []


def test_frozen_parameters_are_fine(tmp_path):
    code = NO_GRAD_MODEL.replace("net = Net()", "net = Net()\n    net.body.requires_grad_(False)")
    s = Snippet(tmp_path, code.format(body="self.body(x)")).run()
    assert s.diagnostics == []


# -- 7. nonfinite-gradient ----------------------------------------------------------------------
def test_nonfinite_gradient(tmp_path):
    s = run(tmp_path, """
        import torch
        w = torch.tensor([0., 1., 4.], requires_grad=True)
        x = w * 1.0
        r = torch.sqrt(x)
        loss = (r * 2).sum()
        loss.backward()
    """)
    d = s.only("nonfinite-gradient")
    assert_explained(d)
    assert d.severity == "error" and d.pass_index == 0
    assert lines(d) == [s.line("r = torch.sqrt(x)"), s.line("x = w * 1.0"), s.line("loss.backward()")]
    g = s.trace.passes[0].graph
    assert [g.node(n).name for n in d.nodes] == ["r", "x"]
    assert "sqrt" in d.hint


def test_nan_from_forward_value(tmp_path):
    s = run(tmp_path, """
        import torch
        p = torch.tensor([0.5, 0.0], requires_grad=True)
        logp = torch.log(p)
        loss = -(logp * torch.tensor([1., 0.])).sum()
        loss.backward()
    """)
    d = s.only("nonfinite-gradient")
    assert lines(d)[0] == s.line("logp = torch.log(p)") and "clamp" in d.hint


def test_nonfinite_gradient_on_a_pass_without_edge_gradients(tmp_path):
    """A one-off NaN on a sampled pass (a big graph's pass 4 of 7): the pass after it is
    recorded in full but finite, so only the leaves can tell; the diagnostic says which."""
    s = run(tmp_path, """
        import torch
        w = torch.randn(300, 300, requires_grad=True)
        for step in range(7):
            scale = float("nan") if step == 4 else 1.0
            loss = (w * w).sum() * scale
            loss.backward()
            w.grad = None
    """)
    assert [p.edge_gradients for p in s.trace.passes] == [True, True, True, False, False, True, False]
    d = s.only("nonfinite-gradient")
    assert d.severity == "error" and d.pass_index == 4
    assert "`w`.grad" in d.message and "without the gradient along each edge" in d.message
    assert "every=1" in d.hint
    assert [s.trace.passes[4].graph.node(n).name for n in d.nodes] == ["w"]


def test_finite_gradients_are_fine(tmp_path):
    s = run(tmp_path, """
        import torch
        w = torch.tensor([1., 1., 4.], requires_grad=True)
        loss = torch.sqrt(w).sum() + torch.log(w).sum()
        loss.backward()
    """)
    assert s.diagnostics == []


# -- 8. nonscalar-backward ----------------------------------------------------------------------
def test_nonscalar_backward(tmp_path):
    s = run(tmp_path, """
        import torch
        w = torch.tensor([1.], requires_grad=True)
        y = torch.cat([w * 2, w * 3])
        y.backward()
    """, raises=RuntimeError, match="scalar outputs")
    d = s.only("nonscalar-backward")
    assert_explained(d)
    assert lines(d) == [s.line("y.backward()"), s.line("y = torch.cat")]
    assert "gradient=torch.tensor([1., 2.])" in d.hint and "[2]" in d.message
    assert s.trace.passes[0].graph.node(d.nodes[0]).name == "y"


def test_nonscalar_backward_with_gradient_is_fine():
    with gradscope.trace() as t:
        _run_example("grad_tensors")
    assert t.diagnostics == []


# -- a zoo of correct programs: no warning, no error ---------------------------------------------
ZOO = {
    "mlp_10_layers": """
        import torch
        torch.manual_seed(0)
        layers = []
        for i in range(10):
            layers += [torch.nn.Linear(32, 32), torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers, torch.nn.Linear(32, 1))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for step in range(3):
            opt.zero_grad()
            loss = model(torch.randn(16, 32)).pow(2).mean()
            loss.backward()
            opt.step()
    """,
    "cnn_inplace_relu": """
        import torch
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(inplace=True),
            torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU(inplace=True),
            torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3),
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        for step in range(3):
            x, y = torch.randn(5, 1, 8, 8), torch.randint(0, 3, (5,))
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                acc = (model(x).argmax(1) == y).float().mean()
    """,
    "custom_function": """
        import torch
        class Square(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x
            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return 2 * x * g
        w = torch.tensor([1., 2., 3.], requires_grad=True)
        for step in range(2):
            Square.apply(w).sum().backward()
            w.grad = None
    """,
    "checkpoint": """
        import torch
        from torch.utils.checkpoint import checkpoint
        block = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 4))
        opt = torch.optim.SGD(block.parameters(), lr=0.1)
        x = torch.randn(3, 4, requires_grad=True)
        for reentrant in (True, False):
            opt.zero_grad()
            x.grad = None
            out = checkpoint(block, torch.sigmoid(x), use_reentrant=reentrant)
            out.pow(2).sum().backward()
            opt.step()
    """,
    "shared_weights": """
        import torch
        lin = torch.nn.Linear(3, 3)
        opt = torch.optim.SGD(lin.parameters(), lr=0.1)
        for step in range(3):
            opt.zero_grad()
            x = torch.randn(2, 3)
            loss = lin(torch.tanh(lin(x))).sum()
            loss.backward()
            opt.step()
    """,
    "second_order": """
        import torch
        x = torch.tensor([3.], requires_grad=True)
        y = torch.pow(x, 3)
        (g,) = torch.autograd.grad(y, x, create_graph=True)
        (g2,) = torch.autograd.grad(g, x)
        penalty = torch.autograd.grad(y.sum(), x, create_graph=True)[0].pow(2).sum()
        penalty.backward()
    """,
    "logistic_manual": """
        import torch
        torch.manual_seed(1)
        X = torch.randn(50, 2)
        Y = (X.sum(1) > 0).float()
        w = torch.zeros(2, requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        for step in range(20):
            p = torch.sigmoid(X @ w + b)
            loss = torch.nn.functional.binary_cross_entropy(p, Y)
            loss.backward()
            with torch.no_grad():
                w -= 0.5 * w.grad
                b -= 0.5 * b.grad
                w.grad.zero_()
                b.grad.zero_()
    """,
    "rnn_tbptt": """
        import torch
        rnn = torch.nn.GRUCell(3, 5)
        opt = torch.optim.SGD(rnn.parameters(), lr=0.1)
        h = torch.zeros(2, 5)
        for chunk in range(3):
            h = h.detach()
            opt.zero_grad()
            for t in range(4):
                h = rnn(torch.randn(2, 3), h)
            h.pow(2).mean().backward()
            opt.step()
    """,
    "eval_between_steps": """
        import torch
        model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(3):
            model.train()
            opt.zero_grad()
            model(torch.randn(4, 3)).pow(2).mean().backward()
            opt.step()
            model.eval()
            with torch.no_grad():
                val = model(torch.randn(4, 3)).mean()
            print(val.detach().item())
    """,
}


@pytest.mark.parametrize("name", ZOO)
def test_zoo_has_no_false_positive(tmp_path, name):
    s = Snippet(tmp_path, ZOO[name]).run()
    assert s.trace.passes and problems(s) == []


@pytest.mark.parametrize("name", ["backward", "grad_tensors", "second_order", "requires_grad"])
def test_lesson_examples_are_clean(name):
    with gradscope.trace() as t:
        _run_example(name)
    assert t.diagnostics == []


def test_logistic_regression_example_is_clean(tmp_path):
    pytest.importorskip("matplotlib")
    with gradscope.trace() as t:
        _run_example("logistic_regression", "--max-iterations", "40", "--out", str(tmp_path / "lr.png"))
    assert len(t.passes) == 40 and t.diagnostics == []


def test_torch_compile_is_clean(tmp_path):
    s = run(tmp_path, """
        import torch
        model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        step = torch.compile(lambda x: model(x).pow(2).mean(), backend="aot_eager")
        for i in range(3):
            opt.zero_grad()
            step(torch.randn(3, 4)).backward()
            opt.step()
    """)
    assert s.trace.passes and problems(s) == []


def test_checks_do_not_change_gradients(tmp_path):
    """The live checks read saved tensors before every backward: gradients stay bitwise equal."""
    def step(traced: bool):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Sigmoid(), torch.nn.Linear(6, 6),
                                    torch.nn.ReLU(inplace=True), torch.nn.Linear(6, 1))
        x = torch.randn(4, 6)
        if traced:
            with gradscope.trace():
                model(x).pow(2).sum().backward()
        else:
            model(x).pow(2).sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    for a, b in zip(step(False), step(True)):
        assert torch.equal(a, b)


# -- saved traces diagnose the same --------------------------------------------------------------
def test_loaded_trace_rediagnoses_the_same(tmp_path):
    s = run(tmp_path, """
        import warnings
        import torch
        warnings.simplefilter("ignore")
        model = torch.nn.Linear(3, 1)
        extra = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        w = torch.tensor([0., 1.], requires_grad=True)
        for step in range(3):
            y = model(torch.randn(2, 3)) + torch.sqrt(w).sum() + extra(torch.randn(2, 3)).detach()
            loss = y.sum()
            loss.backward()
            print(y.grad)
            opt.step()
        loss = (w * w).sum()
        w.data.add_(1)
        loss.backward()
    """)
    codes = s.codes()
    assert {"grad-accumulation", "nonleaf-grad", "nonfinite-gradient", "saved-tensor-modified"} <= set(codes)
    loaded = gradscope.load(s.trace.save(tmp_path / "trace.json"))
    assert [d.code for d in loaded.diagnostics] == codes
    assert diagnose(loaded) == s.diagnostics


# -- helpers ------------------------------------------------------------------------------------
def _run_example(name: str, *argv: str) -> None:
    old = sys.argv
    sys.argv = [str(EXAMPLES / f"{name}.py"), *argv]
    try:
        runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    finally:
        sys.argv = old


def _example_line(name: str, code: str) -> int:
    text = (EXAMPLES / f"{name}.py").read_text().splitlines()
    hits = [i for i, line in enumerate(text, 1) if line.strip().startswith(code)]
    assert len(hits) == 1
    return hits[0]


def test_gradient_penalty_with_autograd_grad_is_fine(tmp_path):
    """autograd.grad passes return gradients and leave .grad alone: no accumulation."""
    s = run(tmp_path, """
        import torch
        model = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for step in range(3):
            opt.zero_grad()
            x = torch.randn(4, 3, requires_grad=True)
            out = model(x).sum()
            (gx,) = torch.autograd.grad(out, x, create_graph=True)
            loss = out + gx.pow(2).sum()
            loss.backward()
            opt.step()
    """)
    assert problems(s) == []
