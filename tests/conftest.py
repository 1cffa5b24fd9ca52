"""Shared fixtures: the lesson's graph built by hand from the model, and a way to run
the `gradscope` command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradscope.model import Edge, Graph, Node, Pass, Source, TensorSummary, Trace

ROOT = Path(__file__).resolve().parents[1]


def scalar(v: float) -> TensorSummary:
    """A 0-d float32 summary holding `v`."""
    return TensorSummary(shape=[], dtype="float32", norm=abs(v), max_abs=abs(v), mean=v, value=v)


def lesson_graph() -> Graph:
    """y = (x + w) * (w + 1) at w = 1, x = 2, after y.backward():
    a = x + w = 3, b = w + 1 = 2; y sends dy/da = b = 2 to a and dy/db = a = 3 to b;
    w gets 2 + 3 = 5, x gets 2."""

    def src(line: int, code: str) -> Source:
        return Source(file="/home/user/lesson.py", line=line, code=code, function="<module>")

    leaf = dict(kind="leaf", grad_fn="AccumulateGrad", shape=[], dtype="float32")
    op = dict(kind="op", shape=[], dtype="float32")
    nodes = [
        Node(id="y", name="y", grad_fn="MulBackward0", op="mul", source=src(5, "y = a * b"),
             is_root=True, seed=scalar(1.0), grad_outputs=[scalar(1.0)], **op),
        Node(id="a", name="a", grad_fn="AddBackward0", op="add", source=src(3, "a = x + w"),
             grad_outputs=[scalar(2.0)], **op),
        Node(id="b", name="b", grad_fn="AddBackward0", op="add", source=src(4, "b = w + 1"),
             grad_outputs=[scalar(3.0)], **op),
        Node(id="w", name="w", value=1.0, grad_after=scalar(5.0), **leaf),
        Node(id="x", name="x", value=2.0, grad_after=scalar(2.0), **leaf),
    ]
    edges = [
        Edge("a", "y", 0, grad=scalar(2.0), local=2.0),
        Edge("b", "y", 1, grad=scalar(3.0), local=3.0),
        Edge("x", "a", 0, grad=scalar(2.0), local=1.0),
        Edge("w", "a", 1, grad=scalar(2.0), local=1.0),
        Edge("w", "b", 0, grad=scalar(3.0), local=1.0),
    ]
    return Graph(nodes, edges)


def lesson_trace(passes: int = 1) -> Trace:
    """`passes` backward passes over the lesson graph, w.grad accumulating 5 per pass."""
    trace = Trace(meta={"script": "/home/user/lesson.py"})
    for i in range(passes):
        g = lesson_graph()
        g.node("w").grad_before = scalar(5.0 * i) if i else None
        g.node("w").grad_after = scalar(5.0 * (i + 1))
        trace.passes.append(Pass(index=i, api="Tensor.backward", graph=g,
                                 source=Source("/home/user/lesson.py", 6, "y.backward()")))
    return trace


@pytest.fixture
def lesson() -> Graph:
    return lesson_graph()


def run_gradscope(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `gradscope ARGS` (as `python -m gradscope.cli`) in `cwd` and capture its output."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "gradscope.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def gradscope_cmd(tmp_path):
    """`gradscope_cmd(*args)` runs the command in a fresh folder (tmp_path)."""
    return lambda *args, **kw: run_gradscope(*args, cwd=tmp_path, **kw)
