"""`saved-tensor-modified` names both lines everywhere: in `sources` (saving line, then the
modifying line), in the terminal summary, and on the SVG (the in-place op red too).

Ops that save their own output (sigmoid, exp, tanh, relu), edited by `s.mul_(2)` or
`s += 1`, with backward going through the edit or past it (through another consumer).
"""

from __future__ import annotations

import runpy
import textwrap

import pytest

import gradscope
from gradscope.render.dot import RED
from gradscope.render.select import pass_dot
from gradscope.render.text import summary

OPS = ["sigmoid", "exp", "tanh", "relu"]
EDITS = ["s.mul_(2)", "s += 1"]


def _run(tmp_path, op: str, edit: str, through: str):
    path = tmp_path / "x.py"
    path.write_text(textwrap.dedent(f"""\
        import torch
        w = torch.tensor([1., -2.], requires_grad=True)
        h = w * 3
        s = torch.{op}(h)
        t = s * 1
        {edit}
        {through}.sum().backward()
    """))
    with gradscope.trace() as t:
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            runpy.run_path(str(path), run_name="__main__")
    return t.trace


@pytest.mark.parametrize("through", ["s", "t"], ids=["backward-through-the-edit", "backward-past-the-edit"])
@pytest.mark.parametrize("edit", EDITS)
@pytest.mark.parametrize("op", OPS)
def test_both_lines_in_sources_summary_and_svg(tmp_path, op, edit, through):
    trace = _run(tmp_path, op, edit, through)
    (d,) = [d for d in trace.diagnostics if d.code == "saved-tensor-modified"]
    assert [s.line for s in d.sources] == [4, 6]  # saved at line 4, modified at line 6
    assert "saved at x.py:4, modified at x.py:6" in summary(trace)
    graph = trace.passes[0].graph
    saver = graph.node(d.nodes[0])
    assert saver.op == op
    dot = pass_dot(trace, trace.passes[0])
    assert "saved at x.py:4, modified at x.py:6" in dot  # the note on the picture
    if through == "s":  # the edit is a node of this graph: drawn red too
        assert len(d.nodes) == 2
        edit_node = graph.node(d.nodes[1])
        assert edit_node.source.line == 6 and edit_node.op in {"mul_", "add_", "iadd"}
        red = [line for line in dot.splitlines() if f"color=\"{RED}\"" in line or f"color={RED}" in line]
        assert sum("shape=" in line and "->" not in line and "diag" not in line for line in red) == 2, red
    else:
        assert d.nodes == [saver.id]
