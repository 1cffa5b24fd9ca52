"""What the user's code sees and measures under tracing is what it sees under `python`:
inference mode, torch's own tracers (JIT, FX, export), profilers and dispatch modes, and
warnings filed under the user's line."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
import torch.nn as nn
from conftest import run_gradscope
from zoo import train_two_models_in_threads

import gradscope
from gradscope.model import load

CAPTURE_DIR = os.path.dirname(os.path.abspath(gradscope.__file__)) + os.sep + "capture"


def _model() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), torch.randn(3, 4)


def test_ops_in_inference_mode_are_run_and_training_passes_still_recorded():
    model, x = _model()
    with gradscope.trace() as t:
        with torch.inference_mode():
            pred = model(x)
            pred.mul_(2)  # an in-place edit of an inference tensor
        loss = model(x).sum()
        loss.backward()
    assert torch.equal(pred, model(x).detach() * 2)
    assert [n.op for n in t.passes[0].graph.nodes if n.kind == "op"][:2] == ["sum", "linear"]


def test_jit_trace_graph_names_the_users_lines_not_gradscope():
    def f(a):
        return torch.tanh(a * 2 + 1)

    a = torch.randn(3, requires_grad=True)
    plain = str(torch.jit.trace(f, (a,)).graph)
    with gradscope.trace():
        traced = str(torch.jit.trace(f, (a,)).graph)  # check_trace re-traces: must agree
    assert traced == plain
    assert "test_capture_isolation.py" in traced and CAPTURE_DIR not in traced


def test_fx_and_export_graphs_are_those_of_plain_python():
    model, x = _model()

    def fx_stack_traces():
        tracer = torch.fx.Tracer()
        tracer.record_stack_traces = True
        graph = tracer.trace(model)
        return str(graph), [n.stack_trace or "" for n in graph.nodes]

    def exported():
        ep = torch.export.export(model, (x,))
        return ep.graph_module.code, [n.meta.get("stack_trace") or "" for n in ep.graph.nodes]

    for build in (fx_stack_traces, exported):
        plain = build()
        with gradscope.trace():
            traced = build()
        assert traced[0] == plain[0]
        assert not any(CAPTURE_DIR in s for s in traced[1]), build.__name__


def test_profiler_counts_the_same_aten_ops_traced_and_untraced():
    model, x = _model()

    def aten_ops() -> int:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model.zero_grad()
            model(x).pow(2).sum().backward()
        return sum(1 for e in prof.events() if e.name.startswith("aten::"))

    plain = aten_ops()
    with gradscope.trace(jacobian=64) as t:
        traced = aten_ops()
    assert traced == plain and len(t.passes) == 1
    assert t.passes[0].graph.find("0.weight").grad_after.norm > 0  # the statistics were computed


def _python_and_gradscope(folder, name: str, source: str) -> tuple:
    """Run a script with `python` and with `gradscope trace -o out`; both must succeed."""
    script = folder / name
    script.write_text(source)
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=folder)
    traced = run_gradscope("trace", "-o", "out", str(script), cwd=folder)
    assert plain.returncode == traced.returncode == 0, traced.stderr
    return plain, traced


WARNING_SCRIPT = """\
import os, warnings
import torch
import torch.nn.functional as F

x = torch.ones(2, 3, requires_grad=True)
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("default")
    a = F.softmax(x)  # a Python warning from torch (stacklevel)
    b = F.softmax(x)
    y = x * 2
    y.grad  # a C++ warning
    y.grad
    warnings.filterwarnings("ignore", message="Implicit dimension", module="__main__")
    c = F.softmax(x)
for w in seen:
    print(os.path.basename(w.filename), w.lineno, w.category.__name__, str(w.message)[:30])
(a.sum() + b.sum() + c.sum()).backward()
"""


def test_warnings_inside_ops_are_filed_under_the_users_lines(tmp_path):
    plain, traced = _python_and_gradscope(tmp_path, "warns.py", WARNING_SCRIPT)
    lines = plain.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ["8", "9", "11", "12"]  # twice each, as python
    assert traced.stdout.splitlines() == lines


def test_warning_filters_by_module_match_in_process():
    import warnings

    def run():
        x = torch.ones(2, 3, requires_grad=True)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("default")
            warnings.filterwarnings("ignore", message="Implicit dimension", module=__name__)
            torch.nn.functional.softmax(x)
            torch.nn.functional.softmax(x * 2)  # a second line: its own registry entry
        return [(os.path.basename(w.filename), w.lineno) for w in seen]

    show = warnings._showwarnmsg
    assert run() == []
    with gradscope.trace():
        assert run() == []
    assert warnings._showwarnmsg is show  # nothing of gradscope's is left


NESTED_SCRIPT = """\
import torch, gradscope
w = torch.ones(2, requires_grad=True)
(w * 2).sum().backward()
with gradscope.trace() as t:
    y = (w * 3).sum()
    y.backward()
    try:
        with gradscope.trace():  # nested in the script's own: an error, as under python
            pass
    except gradscope.capture.NestedTraceError as e:
        print("nested:", e)
print(len(t.passes), t.passes[0].graph.find("y").op, t.passes[0].graph.find("y").source.line, w.grad.tolist())
(w * 4).sum().backward()
"""


def test_a_script_that_traces_itself_runs_under_gradscope_trace(tmp_path):
    plain, traced = _python_and_gradscope(tmp_path, "selftrace.py", NESTED_SCRIPT)
    assert traced.stdout == plain.stdout
    assert plain.stdout.splitlines()[-1] == "1 sum 5 [5.0, 5.0]"
    saved = load(tmp_path / "out" / "trace.json")
    # the outer trace paused for the inner one: the passes before and after it, and a note
    assert [p.source.line for p in saved.passes] == [3, 13]
    assert [(e.kind, e.source.line, e.data) for e in saved.events if e.kind == "nested-trace"] == [
        ("nested-trace", 4, {"passes": 1})]
    assert any(d.code == "nested-trace" and d.sources[0].line == 4 for d in saved.diagnostics)


def test_compiling_a_module_warns_as_without_gradscope():
    import warnings

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    compiled = torch.compile(model, backend="eager")
    x = torch.randn(2, 4)

    def warned() -> list[str]:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            for _ in range(3):
                compiled(x).sum().backward()
        return [str(w.message)[:40] for w in seen]

    assert warned() == []
    with gradscope.trace() as t:
        assert warned() == []
    assert len(t.passes) == 3
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:  # the user's own global hook: torch's warning is theirs to see, traced or not
        plain = warned()
        with gradscope.trace():
            traced = warned()
    finally:
        handle.remove()
    assert traced == plain and len(plain) == 3


def test_gradcheck_is_not_a_saved_tensor_edit_but_a_real_data_edit_is():
    """gradcheck perturbs its input through `.data` and puts it back before backward: the
    saved values are the ones backward needs. An edit left in place is still reported."""
    x = torch.randn(3, dtype=torch.double, requires_grad=True)
    with gradscope.trace() as t:
        assert torch.autograd.gradcheck(lambda a: (a.sin() * a).sum(), (x,))
    assert len(t.passes) == 4 and [d.code for d in t.diagnostics] == []

    with gradscope.trace() as t:
        w = torch.ones(3, requires_grad=True)
        y = (w * w).sum()
        w.data.add_(1)  # left in place: backward reads the new values
        w.data.sub_(0.5)
        y.backward()
    (found,) = t.diagnostics
    assert found.code == "saved-tensor-modified"
    assert [s.code for s in found.sources] == ["y = (w * w).sum()", "w.data.add_(1)  # left in place: backward reads the new values"]


def test_two_models_trained_in_threads_are_recorded_apart():
    with gradscope.trace() as t:
        train_two_models_in_threads(steps=20)
    assert len(t.passes) == 40 and [p.index for p in t.passes] == list(range(40))
    kinds = {}
    for p in t.passes:  # each pass is one model's: its activation, its own layer widths
        activation = {n.op for n in p.graph.nodes if n.module == "1"}
        widths = sorted(n.shape[0] for n in p.graph.leaves if n.name.endswith("bias"))
        assert p.graph.find("loss").source.code == "loss = model(x).pow(2).mean()"
        kinds.setdefault(tuple(activation), set()).add(tuple(widths))
    assert kinds == {("relu",): {(1, 8)}, ("tanh",): {(1, 3)}}
    assert t.diagnostics == []  # no false no-gradient from the other thread's modules
    assert torch._C._len_torch_function_stack() == 0


def _unreadable_passes():
    """Backward through tensors whose values gradscope cannot read."""
    w = torch.ones(3, device="meta", requires_grad=True)
    (w * 2).sum().backward()
    indices, values = torch.tensor([[0, 1], [1, 0]]), torch.tensor([1.0, 2.0])
    s = torch.sparse_coo_tensor(indices, values, (2, 2), requires_grad=True)
    d = torch.ones(2, 2, requires_grad=True)
    torch.sparse.mm(s, d).sum().backward()
    a, b = torch.randn(2, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    nt = torch.nested.as_nested_tensor([a, b], layout=torch.jagged)
    nt.sin().values().sum().backward()


def test_meta_sparse_and_nested_passes_are_recorded_with_shapes(tmp_path):
    with gradscope.trace() as t:
        _unreadable_passes()
    assert len(t.passes) == 3
    meta = t.passes[0].graph.find("w")
    assert (meta.shape, meta.device, meta.grad_after.shape, meta.grad_after.norm) == ([3], "meta", [3], None)
    sparse = t.passes[1].graph.find("s")
    assert sparse.grad_after.shape == [2, 2] and sparse.value is None
    assert t.passes[1].graph.find("d").grad_after.value == [[2.0, 2.0], [1.0, 1.0]]
    ragged = [n.shape for n in t.passes[2].graph.nodes if n.op == "sin"]
    assert ragged == [[2, -1, 3]]  # the ragged dimension of the nested tensor
    t.save(tmp_path / "trace.json")
    assert len(load(tmp_path / "trace.json").passes) == 3


def test_passes_after_a_failed_optimizer_step_are_recorded_or_said_lost():
    class Broken(torch.optim.SGD):
        def step(self, closure=None):
            raise FloatingPointError("step failed")

    model = nn.Linear(2, 1)
    w = torch.ones(2, requires_grad=True)
    with gradscope.trace() as t:
        for opt in (Broken(model.parameters(), lr=0.1), Broken([w], lr=0.1)):
            for _ in range(2):
                loss = model(torch.ones(1, 2)).sum() if opt.param_groups[0]["params"][0] is not w else (w * 3).sum()
                loss.backward()
                try:
                    opt.step()  # raises: its post-hook, which put the recorder back, never runs
                except FloatingPointError:
                    pass
    # the model's second forward runs a module: the recorder is back for its pass; the plain
    # tensor's passes come before any module: lost, and the trace says so (at the next step,
    # and at the end)
    assert len(t.passes) == 2
    notes = [d for d in t.diagnostics if d.code == "pass-not-recorded"]
    assert ["until the next step" in d.message for d in notes] == [True, True, False]
    assert "until the trace ended" in notes[2].message and "optimizer.step() at line" in notes[2].message
    assert notes[0].sources[0].code == "opt.step()  # raises: its post-hook, which put the recorder back, never runs"
    assert torch._C._len_torch_function_stack() == 0


def test_a_trace_does_not_import_dynamo_and_a_first_export_inside_it_steps_aside(tmp_path):
    """Importing torch.export's internals imports Dynamo (seconds at each trace start): the
    trace waits for the user's own import, and an export first run inside the trace still
    gets graphs without gradscope's frames."""
    script = tmp_path / "export_first.py"
    script.write_text(
        "import sys, torch, torch.nn as nn, gradscope\n"
        "model, x = nn.Sequential(nn.Linear(4, 8), nn.ReLU()), torch.randn(3, 4)\n"
        "with gradscope.trace():\n"
        "    print('dynamo imported:', 'torch._dynamo' in sys.modules)\n"
        "    ep = torch.export.export(model, (x,))\n"
        "    print('frames:', sum(%r in (n.meta.get('stack_trace') or '') for n in ep.graph.nodes))\n"
        % CAPTURE_DIR
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "dynamo imported: False" in out.stdout
    assert "frames: 0" in out.stdout
