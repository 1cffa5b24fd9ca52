"""The showcases in examples/: their printed numbers are the lesson's, and the traces agree.

Plain runs execute each example as the user would (`python examples/NAME.py`) and check the
exact output. Traced runs execute it under `gradscope.trace()` in this process (or under the
`gradscope trace` command) and check that the recorded graph holds the same numbers.
Everything runs real torch; nothing is mocked.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NAMES = [
    "backward",
    "grad_tensors",
    "second_order",
    "grad_accumulation",
    "requires_grad",
    "leaf_inplace",
    "logistic_regression",
    "tiny_gpt",
]
LEAF_MESSAGE = "a leaf Variable that requires grad is being used in an in-place operation."

# Every plain run the tests need: (example, extra argv). They start together (torch's import
# dominates each one) and the tests read their results.
PLAIN_RUNS = [(n, ()) for n in NAMES] + [("grad_accumulation", ("--zero-grad",))]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("MPLBACKEND", "Agg")
    return env


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """{(name, argv): CompletedProcess-like (returncode, stdout, stderr)} for PLAIN_RUNS, run in a temp cwd."""
    cwd = tmp_path_factory.mktemp("plain")
    procs = {
        key: subprocess.Popen(
            [sys.executable, str(EXAMPLES / f"{key[0]}.py"), *key[1]],
            cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for key in PLAIN_RUNS
    }
    results = {}
    for key, p in procs.items():
        out, err = p.communicate(timeout=120)
        results[key] = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    results["cwd"] = cwd
    return results


def _lines(proc) -> list[str]:
    return proc.stdout.strip().splitlines()


def _line_of(name: str, code: str) -> int:
    """The 1-based line number of the line in examples/NAME.py that starts with `code`."""
    lines = (EXAMPLES / f"{name}.py").read_text().splitlines()
    hits = [i for i, text in enumerate(lines, 1) if text.strip().startswith(code)]
    assert len(hits) == 1, f"{code!r} occurs {len(hits)} times in {name}.py"
    return hits[0]


def _num(value):
    """The single number in a value that may be nested in one-element lists ([[5.0]] -> 5.0)."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


# -- the examples themselves ------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_example_is_a_documented_plain_script(name):
    """Each example has a one-line description first in its docstring and never imports gradscope."""
    tree = ast.parse((EXAMPLES / f"{name}.py").read_text())
    doc = ast.get_docstring(tree)
    assert doc and doc.splitlines()[0].strip(), f"{name}.py needs a docstring whose first line describes it"
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "gradscope" not in imported


def test_all_examples_are_tested():
    found = {p.stem for p in EXAMPLES.glob("*.py") if p.stem != "__init__"}
    assert found == set(NAMES)


# -- plain runs: the lesson's printed numbers -----------------------------------------------------
def test_backward_prints_5(plain):
    r = plain[("backward", ())]
    assert r.returncode == 0, r.stderr
    assert _lines(r) == ["tensor([5.])"]


def test_grad_tensors_prints_9(plain):
    r = plain[("grad_tensors", ())]
    assert r.returncode == 0, r.stderr
    assert _lines(r) == ["tensor([9.])"]


def test_second_order_prints_6_then_2(plain):
    r = plain[("second_order", ())]
    assert r.returncode == 0, r.stderr
    assert _lines(r) == ["(tensor([6.], grad_fn=<MulBackward0>),)", "(tensor([2.]),)"]


def test_grad_accumulation_adds_up(plain):
    r = plain[("grad_accumulation", ())]
    assert r.returncode == 0, r.stderr
    assert _lines(r) == ["tensor([5.])", "tensor([10.])", "tensor([15.])", "tensor([20.])"]


def test_grad_accumulation_zero_grad(plain):
    r = plain[("grad_accumulation", ("--zero-grad",))]
    assert r.returncode == 0, r.stderr
    assert _lines(r) == ["tensor([5.])"] * 4


def test_requires_grad_prints_true_three_times(plain):
    r = plain[("requires_grad", ())]
    assert r.returncode == 0, r.stderr
    assert _lines(r) == ["True True True"]


def test_leaf_inplace_raises(plain):
    r = plain[("leaf_inplace", ())]
    assert r.returncode == 1
    assert r.stdout == ""
    assert f"RuntimeError: {LEAF_MESSAGE}" in r.stderr
    assert "Traceback" in r.stderr and "w.add_(1)" in r.stderr


def _lr_iterations(stdout: str) -> list[tuple[int, float, float]]:
    return [(int(i), float(loss), float(acc)) for i, loss, acc in
            re.findall(r"^iteration\s+(\d+)\s+loss ([\d.]+)\s+accuracy ([\d.]+)%$", stdout, re.M)]


def test_logistic_regression_converges_and_saves_png(plain):
    r = plain[("logistic_regression", ())]
    assert r.returncode == 0, r.stderr
    its = _lr_iterations(r.stdout)
    assert [i for i, _, _ in its] == list(range(0, 20 * len(its), 20))
    assert its[-1][2] > 99.0 and all(acc <= 99.0 for _, _, acc in its[:-1])
    assert its[-1][0] < 500  # well under the 1,000-iteration budget
    png = plain["cwd"] / "logistic_regression.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tiny_gpt_learns_its_sentence(plain):
    r = plain[("tiny_gpt", ())]
    assert r.returncode == 0, r.stderr
    first, last = _lines(r)
    assert first == "step 0: loss 3.166"
    assert last.startswith("step 39: loss ") and float(last.split()[-1]) < 0.01


# -- traced runs ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def traced(name: str, *argv: str):
    """Run examples/NAME.py as __main__ inside `gradscope.trace()`; return (trace, stdout lines)."""
    import gradscope

    path = str(EXAMPLES / f"{name}.py")
    out = io.StringIO()
    old_argv = sys.argv
    sys.argv = [path, *argv]
    try:
        with gradscope.trace() as t, contextlib.redirect_stdout(out):
            runpy.run_path(path, run_name="__main__")
    finally:
        sys.argv = old_argv
    return t.trace, out.getvalue().splitlines()


def test_traced_run_prints_the_same(plain):
    """Tracing changes no number the user computes."""
    for name in ["backward", "grad_tensors", "second_order", "requires_grad"]:
        assert traced(name)[1] == _lines(plain[(name, ())]), name
    assert traced("grad_accumulation")[1] == _lines(plain[("grad_accumulation", ())])
    assert traced("grad_accumulation", "--zero-grad")[1] == _lines(plain[("grad_accumulation", ("--zero-grad",))])


def test_traced_backward():
    trace, _ = traced("backward")
    assert len(trace.passes) == 1
    p = trace.passes[0]
    assert p.api == "Tensor.backward" and p.retain_graph
    assert p.source.line == _line_of("backward", "y.backward(retain_graph=True)")
    g = p.graph
    w, x = g.find("w"), g.find("x")
    assert w.kind == x.kind == "leaf"
    assert w.grad_before is None
    assert w.grad_after.value == [5.0]
    assert x.grad_after.value == [2.0]  # dy/dx = dy/da * da/dx = b = 2
    assert w.value == [1.0] and x.value == [2.0]
    for name, code in [("a", "a = torch.add(w, x)"), ("b", "b = torch.add(w, 1)"), ("y", "y = torch.mul(a, b)")]:
        node = g.find(name)
        assert node.kind == "op"
        assert node.source.line == _line_of("backward", code), name
        assert node.source.file.endswith("backward.py")
    assert [n.name for n in g.roots] == ["y"]
    assert g.find("y").seed.value == [1.0]
    # The chain rule on the lesson's graph: y = a * b sends b = 2 to a and a = 3 to b ...
    assert _num(g.edge("a", "y").local) == 2.0 and g.edge("a", "y").grad.value == [2.0]
    assert _num(g.edge("b", "y").local) == 3.0 and g.edge("b", "y").grad.value == [3.0]
    # ... a = w + x and b = w + 1 pass them on times 1, and they meet at w: 2 + 3 = 5.
    assert _num(g.edge("w", "a").local) == 1.0 and g.edge("w", "a").grad.value == [2.0]
    assert _num(g.edge("w", "b").local) == 1.0 and g.edge("w", "b").grad.value == [3.0]
    assert _num(g.edge("x", "a").local) == 1.0 and g.edge("x", "a").grad.value == [2.0]


def test_traced_grad_tensors():
    trace, _ = traced("grad_tensors")
    assert len(trace.passes) == 1
    g = trace.passes[0].graph
    (root,) = g.roots
    assert root.name == "loss" and root.grad_fn == "CatBackward0"
    assert root.seed.value == [1.0, 2.0]
    assert g.find("w").grad_after.value == [9.0]  # 1 * 5 + 2 * 2
    assert g.find("x").grad_after.value == [4.0]  # 1 * b + 2 * 1 = 2 + 2
    assert g.edge("y0", "loss").grad.value == [1.0]
    assert g.edge("y1", "loss").grad.value == [2.0]
    assert g.find("y0").source.line == _line_of("grad_tensors", "y0 = torch.mul(a, b)")


def test_traced_second_order():
    trace, _ = traced("second_order")
    assert len(trace.passes) == 2
    first, second = trace.passes
    assert first.api == second.api == "torch.autograd.grad"
    assert first.create_graph and not second.create_graph
    assert len(first.results) == 1 and first.results[0].value == [6.0]
    assert len(second.results) == 1 and second.results[0].value == [2.0]
    x_id = first.graph.find("x").id
    assert first.inputs == [x_id]
    assert first.graph.find("y").source.line == _line_of("second_order", "y = torch.pow(x, 2)")
    assert not any(n.created_by_backward for n in first.graph.nodes)
    # The second pass differentiates the graph that the first backward built: its op
    # nodes were created by PowBackward0, not by a line of the script.
    made = [n for n in second.graph.nodes if n.created_by_backward]
    assert made and all(n.kind == "op" for n in made)
    assert any(n.grad_fn == "MulBackward0" for n in made)
    assert second.graph.find("x").kind == "leaf"


@pytest.mark.parametrize("argv, grads", [((), [5.0, 10.0, 15.0, 20.0]), (("--zero-grad",), [5.0] * 4)])
def test_traced_grad_accumulation(argv, grads):
    trace, _ = traced("grad_accumulation", *argv)
    assert len(trace.passes) == 4
    after = [p.graph.find("w").grad_after.value for p in trace.passes]
    assert after == [[g] for g in grads]
    before = [p.graph.find("w").grad_before for p in trace.passes]
    assert before[0] is None  # w.grad is None before the first backward
    expected_before = [0.0] * 3 if argv else grads[:3]
    assert [b.value for b in before[1:]] == [[v] for v in expected_before]
    # The mistake is flagged, on the last pass; the fixed loop gets no diagnostic.
    codes = [(d.code, d.severity, d.pass_index) for d in trace.diagnostics]
    assert codes == ([] if argv else [("grad-accumulation", "warning", 3)])
    if not argv:
        flagged = {trace.passes[3].graph.node(i).name for i in trace.diagnostics[0].nodes}
        assert flagged == {"w", "x"}


@pytest.mark.parametrize("name", ["backward", "grad_tensors", "second_order", "requires_grad"])
def test_traced_lesson_has_no_diagnostics(name):
    assert traced(name)[0].diagnostics == []


def test_traced_requires_grad_records_nothing():
    trace, out = traced("requires_grad")
    assert out == ["True True True"]
    assert trace.passes == []


# -- the gradscope command ----------------------------------------------------------------------------
def _cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-c", "from gradscope.cli import main; main()", *args],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300,
    )


def test_cli_backward(tmp_path):
    import gradscope

    r = _cli("trace", "-o", str(tmp_path / "out"), str(EXAMPLES / "backward.py"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "tensor([5.])" in r.stdout
    trace = gradscope.load(tmp_path / "out" / "trace.json")
    assert trace.passes[0].graph.find("w").grad_after.value == [5.0]
    assert trace.passes[0].graph.find("a").source.line == _line_of("backward", "a = torch.add(w, x)")


def test_cli_leaf_inplace_fails_but_writes_trace(tmp_path):
    import gradscope

    r = _cli("trace", "-o", str(tmp_path / "out"), str(EXAMPLES / "leaf_inplace.py"), cwd=tmp_path)
    assert r.returncode == 1
    assert LEAF_MESSAGE in r.stderr
    trace = gradscope.load(tmp_path / "out" / "trace.json")
    assert trace.passes == []  # y.backward() was never reached
    assert trace.meta["exit_code"] == 1
    (event,) = [e for e in trace.events if e.kind == "leaf-inplace-error"]
    assert event.source.line == _line_of("leaf_inplace", "w.add_(1)")
    assert event.data["leaf"] == "w" and event.data["message"] == LEAF_MESSAGE
    (diag,) = trace.diagnostics
    assert (diag.code, diag.severity) == ("leaf-inplace", "error")
    assert [src.line for src in diag.sources][:1] == [event.source.line]
    assert [event.graph.node(i).name for i in diag.nodes] == ["w"]
    # the traceback is the one Python prints: only the script's own frame
    frames = re.findall(r'^  File "([^"]+)", line (\d+)', r.stderr, re.M)
    assert frames == [(str(EXAMPLES / "leaf_inplace.py"), str(event.source.line))]


def test_cli_logistic_regression(tmp_path):
    import gradscope

    out = tmp_path / "out"
    r = _cli("trace", "-o", str(out), str(EXAMPLES / "logistic_regression.py"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    its = _lr_iterations(r.stdout)
    assert its and its[-1][2] > 99.0
    # under gradscope the example saves its picture into the output folder (GRADSCOPE_OUT)
    png = out / "logistic_regression.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not (tmp_path / "logistic_regression.png").exists()
    report = (out / "report.html").read_text()
    assert "Pictures the script saved" in report and report.count("data:image/png;base64,") == 1
    # a long run: the loss curve and each parameter's charts across passes
    assert "loss curve: loss" in report and 'data-param="features.bias"' in report
    trace = gradscope.load(out / "trace.json")
    losses = [p.graph.find("loss").value for p in trace.passes]
    assert losses[0] == pytest.approx(float(r.stdout.split("loss ")[1].split()[0]), abs=1e-4)
    assert losses[-1] < losses[0] / 2  # the loss of every pass is recorded, and it fell
    assert len(trace.passes) == its[-1][0] + 1  # one backward per iteration run
    g = trace.passes[-1].graph
    for name, shape in [("features.weight", [1, 2]), ("features.bias", [1])]:
        leaf = g.find(name)
        assert leaf.kind == "leaf" and leaf.is_parameter and leaf.shape == shape
    grad_fns = {n.grad_fn for n in g.nodes}
    assert {"AddmmBackward0", "SigmoidBackward0", "BinaryCrossEntropyBackward0"} <= grad_fns
    # optimizer.zero_grad() sets .grad to None every step: each pass starts from nothing.
    assert all(p.graph.find("features.weight").grad_before is None for p in trace.passes)
    assert trace.diagnostics == []
    assert [p.step for p in trace.passes[:3]] == [0, 1, 2]
    # Every iteration builds the same graph: a handful of pictures, not one per iteration.
    svgs = list(out.rglob("*.svg"))
    assert 1 <= len(svgs) <= 5, [s.name for s in svgs]


# -- the docs gallery ------------------------------------------------------------------------------------
def _gallery_refs(md: Path) -> set[str]:
    return set(re.findall(r"\]\(gallery/([^)]+)\)", md.read_text()))


def test_gallery_script_rebuilds_the_committed_gallery(tmp_path):
    """docs/build_gallery.py regenerates every picture that docs/gallery.md shows, and nothing else."""
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "build_gallery.py"), "--out", str(tmp_path)],
                       cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    built = {p.name for p in (tmp_path / "gallery").iterdir()}
    assert built == _gallery_refs(tmp_path / "gallery.md")
    assert built == _gallery_refs(ROOT / "docs" / "gallery.md")
    assert built == {p.name for p in (ROOT / "docs" / "gallery").iterdir()}
    assert (tmp_path / "gallery.md").read_text() == (ROOT / "docs" / "gallery.md").read_text()
    for name in built:
        data = (tmp_path / "gallery" / name).read_bytes()
        assert data.startswith(b"\x89PNG") if name.endswith(".png") else b"<svg" in data
    # the lesson's 5 is on the backward graph
    assert ">w.grad = 2 + 3 = 5<" in (tmp_path / "gallery" / "backward.svg").read_text()


# -- the guide's Python examples ---------------------------------------------------------------------
def _guide_block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "guide.md").read_text(), re.S)
    (block,) = [b for b in blocks if marker in b]
    return block


def test_guide_examples_run(tmp_path, monkeypatch):
    """The two API examples in docs/guide.md run and give the numbers their comments claim."""
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "guide_trace.py"
    script.write_text(_guide_block('t.save("trace.json")'))
    ns = runpy.run_path(str(script))
    g = ns["g"]
    assert g.find("w").grad_after.value == [5.0]
    assert g.edge("a", "y").grad.value == [2.0]
    assert _num(g.edge("a", "y").local) == 2.0
    assert (tmp_path / "trace.json").exists() and (tmp_path / "graph.svg").exists()

    script = tmp_path / "guide_graph.py"
    script.write_text("import torch\nimport gradscope\n" + _guide_block("gradscope.graph(y)"))
    ns = runpy.run_path(str(script))
    assert [n.label for n in ns["g"].nodes] == ["y", "add", "add_1", "w", "x"]


def _guide_diagnostic_examples() -> list[tuple[str, str]]:
    """(code, script) for each `### `code`: ...` section of the guide's Diagnostics."""
    text = (ROOT / "docs" / "guide.md").read_text().split("\n## Diagnostics\n", 1)[1]
    return re.findall(r"^### `([a-z-]+)`:.*?```python\n(.*?)```", text, re.M | re.S)


def test_guide_documents_every_diagnostic():
    from gradscope.diagnostics import CODES

    assert [code for code, _ in _guide_diagnostic_examples()] == list(CODES)


@pytest.mark.parametrize("code, script", [pytest.param(c, s, id=c) for c, s in _guide_diagnostic_examples()])
def test_guide_diagnostic_example_reports_its_code(code, script, tmp_path, recwarn):
    """Each mistake shown in the guide, traced, is reported with its code and nothing else."""
    import gradscope

    path = tmp_path / f"{code}.py"
    path.write_text(script)
    with contextlib.suppress(RuntimeError), contextlib.redirect_stdout(io.StringIO()):
        with gradscope.trace() as t:
            runpy.run_path(str(path), run_name="__main__")
    assert [(d.code, d.severity) for d in t.diagnostics] == [(code, "warning" if code in WARNINGS else "error")]


WARNINGS = {"grad-accumulation", "nonleaf-grad", "no-gradient"}
