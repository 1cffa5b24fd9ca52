"""Hints in the user's words (#19 item 5): a hint names the script's own variable, never a
label gradscope made up (`lstm_3`, `add_1`), and never suggests what the code already does.

Real scripts run through the `gradscope trace` command (real torch, a subprocess); the
diagnostics are read back from the trace.json and the report it wrote.
"""

from __future__ import annotations

import html
import re
import textwrap
from pathlib import Path

import pytest

from gradscope.diagnostics.user_words import is_made_up
from gradscope.model import Trace, load

# A character-level GRU language model trained with truncated backpropagation through time
# that forgets to detach its hidden state between chunks: the second backward reaches the
# first chunk's freed graph.
TBPTT = """\
import torch
from torch import nn

torch.manual_seed(0)


class CharRNN(nn.Module):
    def __init__(self, vocab=10, size=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, size)
        self.rnn = nn.GRU(size, size, batch_first=True)
        self.head = nn.Linear(size, vocab)

    def forward(self, x, h):
        out, h = self.rnn(self.embed(x), h)
        return self.head(out), h


model = CharRNN()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
data = torch.randint(0, 10, (2, 41))
{var} = torch.zeros(1, 2, 16)
step = 0
for start in range(0, 40, 8):
    x, y = data[:, start:start + 8], data[:, start + 1:start + 9]
    logits, {var} = model(x, {var})
    loss = nn.functional.cross_entropy(logits.reshape(-1, 10), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    step += 1
    print(f"step {{step}} loss {{loss.item():.4f}}")
"""

# nanoGPT's training loop, cut down: micro-steps summed into .grad, one update per iteration.
ACCUMULATE = """\
import torch
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
gradient_accumulation_steps = {k}
for iter_num in range(3):
    for micro_step in range(gradient_accumulation_steps):
        X, Y = torch.randn(5, 8), torch.randint(0, 4, (5,))
        logits = model(X)
        loss = nn.functional.cross_entropy(logits, Y)
        {scale}
        loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    print(f"iter {{iter_num}}: loss {{loss.item():.4f}}")
"""
DIVIDED = "loss = loss / gradient_accumulation_steps  # scale the loss to account for gradient accumulation"


def trace_script(tmp_path: Path, gradscope_cmd, code: str, expect_rc: int = 0,
                 options: tuple[str, ...] = ()) -> tuple[Trace, str]:
    """Run `gradscope trace` on `code`; the saved trace and the report's text."""
    (tmp_path / "train.py").write_text(textwrap.dedent(code))
    r = gradscope_cmd("trace", "-o", "out", *options, "train.py")
    assert r.returncode == expect_rc, r.stderr
    report = (tmp_path / "out" / "report.html").read_text()
    return load(tmp_path / "out" / "trace.json"), html.unescape(re.sub(r"<[^>]+>", "", report))


def made_up_names(trace: Trace) -> set[str]:
    return {n.name for p in trace.passes for n in p.graph.nodes if is_made_up(n)}


@pytest.mark.parametrize("var", ["hidden", "h_prev"])
def test_tbptt_without_detach_names_the_scripts_own_variable(tmp_path, gradscope_cmd, var):
    # (the unrolled GRU's graph is not what this test is about: little time to draw it)
    trace, report = trace_script(tmp_path, gradscope_cmd, TBPTT.format(var=var), expect_rc=1,
                                 options=("--layout-budget", "2"))
    (d,) = [d for d in trace.diagnostics if d.code == "backward-twice"]
    assert f"`{var} = {var}.detach()` at the start of each iteration" in d.hint
    assert f"reaches `{var}`, carried over by `logits, {var} = model(x, {var})` (line 26)" in d.message
    assert [s.line for s in d.sources] == [29, 26, 15]  # the backward, the carrying line, the GRU's line
    # none of the labels gradscope gave the GRU's ops (`gru_1`, `add_37`, ...), nor `loss`
    # (which is not what is carried), nor `step` (an int counter carried across iterations)
    made_up = made_up_names(trace)
    assert {"gru", "gru_1", "embedding"} <= made_up
    for text in (d.hint, d.message):
        assert not {m for m in re.findall(r"`([^`= ]+)`", text)} & made_up
        assert "loss = loss.detach()" not in text and "step = step" not in text
    assert f"{var} = {var}.detach()" in report


def test_state_carried_in_an_unnamed_place_gets_neutral_words(tmp_path, gradscope_cmd):
    """`mem[0]` is carried, but no variable holds it: the hint says what to do without
    inventing a name, and without the label of the op (`tanh_1`)."""
    trace, _ = trace_script(tmp_path, gradscope_cmd, """\
        import torch
        W = torch.full((3, 3), 0.1, requires_grad=True)
        mem = [torch.zeros(3)]
        for x in torch.ones(4, 3):
            mem[0] = torch.tanh(W @ mem[0] + x)
            mem[0].sum().backward()
        """, expect_rc=1)
    (d,) = [d for d in trace.diagnostics if d.code == "backward-twice"]
    assert "reassign the variable that carries it to its `.detach()` at the start of each iteration" in d.hint
    assert "reaches a tensor computed at `mem[0] = torch.tanh(W @ mem[0] + x)` (line 5)" in d.message
    assert not set(re.findall(r"`([^`= ]+)`", d.hint + d.message)) & made_up_names(trace)


def test_nanogpt_accumulation_that_divides_its_loss_gets_no_divide_advice(tmp_path, gradscope_cmd):
    trace, report = trace_script(tmp_path, gradscope_cmd, ACCUMULATE.format(k=4, scale=DIVIDED))
    (d,) = trace.diagnostics
    assert d.code == "grad-accumulation" and d.severity == "info" and "4 backward passes" in d.title
    assert "divide each loss" not in d.hint.lower()
    assert d.hint == ("Nothing to change: the code already divides each loss by 4 at "
                      "`loss = loss / gradient_accumulation_steps` (line 13), so the update uses their mean.")
    assert "already divides each loss by 4" in report


@pytest.mark.parametrize("k", [3, 5])
def test_accumulation_without_division_keeps_the_advice_with_its_k(tmp_path, gradscope_cmd, k):
    trace, _ = trace_script(tmp_path, gradscope_cmd, ACCUMULATE.format(k=k, scale="pass"))
    (d,) = trace.diagnostics
    assert d.code == "grad-accumulation" and d.severity == "info" and f"{k} backward passes" in d.title
    assert d.hint == f"The update uses the sum of {k} gradients: divide each loss by {k} to get their mean."


def test_a_divisor_that_is_not_the_number_of_micro_steps_is_said(tmp_path, gradscope_cmd):
    trace, _ = trace_script(tmp_path, gradscope_cmd, ACCUMULATE.format(k=4, scale="loss = loss * 0.5"))
    (d,) = trace.diagnostics
    assert d.hint == ("Each loss is divided by 2 at `loss = loss * 0.5` (line 13), while 4 gradients are summed "
                      "per update: the update uses their mean only if that divisor is 4.")


def test_a_gradscaler_style_scale_above_the_division_is_seen_through(tmp_path, gradscope_cmd):
    """`(loss * 1024).backward()` (a loss scale, as GradScaler applies) over `loss / k`."""
    code = ACCUMULATE.format(k=4, scale=DIVIDED).replace("loss.backward()", "(loss * 1024.0).backward()")
    trace, _ = trace_script(tmp_path, gradscope_cmd, code)
    (d,) = trace.diagnostics
    assert d.hint.startswith("Nothing to change: the code already divides each loss by 4 at")


def test_summing_loop_without_update_does_not_repeat_a_division_already_made(tmp_path, gradscope_cmd):
    code = """\
        import torch
        w = torch.tensor([1.0, 2.0], requires_grad=True)
        batches = 3
        for i in range(batches):
            loss = (w * w).sum() / batches
            loss.backward()
        print(w.grad.tolist())
        """
    trace, _ = trace_script(tmp_path, gradscope_cmd, code)
    (d,) = trace.diagnostics
    assert d.code == "grad-accumulation" and d.severity == "warning"
    assert "`w.grad.zero_()` or `w.grad = None`" in d.hint
    assert d.hint.endswith("this is fine (the loss is already divided at `loss = (w * w).sum() / batches` (line 5)).")
    trace, _ = trace_script(tmp_path, gradscope_cmd, code.replace(" / batches", ""))
    (d,) = trace.diagnostics
    assert d.hint.endswith("this is fine: divide each loss by the number of batches.")


def trace_in_process(tmp_path: Path, code: str) -> Trace:
    """Run `code` as a script under gradscope.trace() (faster than the command, same rules)."""
    import runpy

    import gradscope

    path = tmp_path / "loop.py"
    path.write_text(textwrap.dedent(code))
    with gradscope.trace() as t:
        with pytest.raises(RuntimeError, match="second time"):
            runpy.run_path(str(path), run_name="__main__")
    return t.trace


def test_a_running_total_of_losses_is_told_to_add_numbers(tmp_path):
    trace = trace_in_process(tmp_path, """\
        import torch
        w = torch.ones(3, requires_grad=True)
        total = 0
        for i in range(3):
            loss = (w * w * i).sum()
            total += loss
            total.backward()
        """)
    (d,) = trace.diagnostics
    assert "reaches `total`, carried over by `total += loss` (line 6)" in d.message
    assert d.hint.startswith("Call backward on each iteration's own loss, and keep the running total as a "
                             "number: `total += loss.item()`")
    assert "total = total.detach()" not in d.hint


def test_a_cell_state_whose_old_ops_were_not_seen_is_still_named(tmp_path):
    """GRUCell's inner ops run in C++: the freed old graph is never read, yet the loop's
    recurrence `state = cell(obs, state)` names what is carried; `obs`, also handed from one
    iteration to the next but detached, and the counter `t` are not blamed."""
    trace = trace_in_process(tmp_path, """\
        import torch
        from torch import nn
        cell = nn.GRUCell(3, 4)
        head = nn.Linear(4, 3)
        obs = torch.zeros(1, 3)
        state = torch.zeros(1, 4)
        for t in range(3):
            state = cell(obs, state)
            action = head(state)
            obs = torch.tanh(action).detach()
            loss = action.pow(2).mean()
            loss.backward()
        """)
    (d,) = trace.diagnostics
    assert "reaches `state`, carried over by `state = cell(obs, state)` (line 8)" in d.message
    assert "`state = state.detach()` at the start of each iteration" in d.hint
    assert "obs" not in d.hint and [s.line for s in d.sources] == [12, 8]


@pytest.mark.parametrize("code, names", [
    ("logits, hidden = model(x, hidden)", ("hidden",)),
    ("out, (h, c) = lstm(x, (h, c))", ("h", "c")),
    ("self.state = self.cell(x, self.state)", ("self.state",)),
    ("total += loss", ("total",)),
    ("step += 1", ()),  # a counter carries no history
    ("i = i + 1", ()),
    ("running += loss.item()", ()),  # a number
    ("h = h.detach()", ()),  # already cut
    ("y = model(x)", ()),  # not a recurrence
])
def test_recurrences_read_from_one_statement(code, names):
    """What `carried_variables` falls back to when no loop is found: the statement at the
    line that made the tensor, read from the Source's own text (the file may be gone)."""
    from gradscope.diagnostics.user_words import carried_variables
    from gradscope.model import Source

    found = carried_variables(None, Source(file="/nonexistent/train.py", line=3, code=code))
    assert (found.names if found is not None else ()) == names


@pytest.mark.parametrize("code, receiver", [
    ("loss.backward()", "loss"),
    ("out.sum().backward()", "out.sum()"),
    ("(a * b).backward()", "(a * b)"),
    ("torch.autograd.backward(y, grad)", "y"),
    ("scaler.scale(loss).backward()  # amp", "scaler.scale(loss)"),
])
def test_the_backward_receiver_is_the_users_expression(code, receiver):
    from gradscope.diagnostics.user_words import backward_receiver
    from gradscope.model import Source

    assert backward_receiver(Source(file="/nonexistent/train.py", line=1, code=code)) == receiver


def test_made_up_labels_are_told_from_user_names():
    from gradscope.diagnostics.user_words import variable
    from gradscope.model import Node

    def op(name, op_):
        return Node(id="n", kind="op", name=name, grad_fn="X", op=op_)

    assert [variable(op(n, o)) for n, o in [("lstm_3", "lstm"), ("add", "add"), ("hidden", "lstm"),
                                             ("logits", "linear"), ("", "mul")]] == [None, None, "hidden", "logits", None]
    leaf = Node(id="l", kind="leaf", name="leaf_2", grad_fn="AccumulateGrad")
    param = Node(id="p", kind="leaf", name="0.weight", grad_fn="AccumulateGrad", is_parameter=True)
    assert variable(leaf) is None and variable(param) is None  # `0.weight.grad` is not Python


def test_grad_of_an_unnamed_non_leaf_gets_no_made_up_variable(tmp_path):
    """`(x * w).grad`: the product has no variable; the hint neither calls it `mul` (the
    label gradscope gives it) nor invents one."""
    import warnings

    import gradscope

    path = tmp_path / "nonleaf.py"
    path.write_text("import torch\nx = torch.ones(2, requires_grad=True)\nw = torch.ones(2, requires_grad=True)\n"
                    "(x * w + 1).sum().backward()\nprint((x * w).grad)\n")
    import runpy

    with warnings.catch_warnings(), gradscope.trace() as t:
        warnings.simplefilter("ignore")
        runpy.run_path(str(path), run_name="__main__")
    (d,) = t.diagnostics
    assert d.code == "nonleaf-grad" and d.title == "`.grad` of a non-leaf tensor is always None"
    assert d.hint.startswith("Keep the tensor in a variable and call `.retain_grad()` on it before backward")
    assert "`mul" not in d.hint and "`t." not in d.hint


def test_only_the_variable_the_loss_comes_from_is_blamed(tmp_path):
    """`total_loss += loss` also carries a graph, but the failing backward is `loss`'s, which
    comes from `hidden`: only `hidden` is named."""
    trace = trace_in_process(tmp_path, """\
        import torch
        from torch import nn
        cell = nn.RNNCell(3, 4)
        hidden = torch.zeros(1, 4)
        total_loss = 0
        for x in torch.randn(3, 1, 3):
            hidden = cell(x, hidden)
            loss = hidden.pow(2).mean()
            total_loss += loss
            loss.backward()
        """)
    (d,) = trace.diagnostics
    assert "reaches `hidden`, carried over by `hidden = cell(x, hidden)` (line 7)" in d.message
    assert "`hidden = hidden.detach()` at the start of each iteration" in d.hint and "total_loss" not in d.hint
