"""Drawing after the script: bounded by a total budget, in order of use, in child
processes that never outlive gradscope; the script's exit code kept; Ctrl-C and SIGTERM
stop it and still leave trace.json and the report. Unrolled loops (an LSTMCell over 200
steps, 5,000 multiplications in a loop) are drawn folded, within a small budget; the
graph that does not lay out here is a recurrence written out line by line (no loop to fold)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT
from test_cli import write
from test_render_layout import chain

from gradscope.model import Diagnostic, Pass, Trace, load
from gradscope.render.outdir import drawing_order

LSTM_200 = """\
import torch
torch.manual_seed(0)
cell = torch.nn.LSTMCell(4, 8)
h = c = torch.zeros(1, 8)
x = torch.randn(200, 1, 4)
for t in range(200):  # 3,000 nodes: minutes for Graphviz in full, drawn folded
    h, c = cell(x[t], (h, c))
h.sum().backward()
print("trained")
"""

# 600 recurrent steps written out line by line (3,000 nodes, two weights used at every
# step): no loop to fold, and Graphviz needs minutes for it
UNROLLED_3000 = ("import torch\ntorch.manual_seed(0)\nW = torch.randn(8, 8, requires_grad=True)\n"
                 "U = torch.randn(4, 8, requires_grad=True)\nx = torch.randn(600, 1, 4)\nh = torch.zeros(1, 8)\n"
                 + "".join(f"h = torch.tanh(h @ W + x[{k}] @ U) * 0.5\n" for k in range(600))
                 + "h.sum().backward()\nprint('trained')\n")

CHAIN_5000 = """\
import torch
w = torch.ones(3, requires_grad=True)
h = w
for _ in range(5000):
    h = h * 1.0001
h.sum().backward()
print("trained")
"""


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    """`gradscope ARGS` started in `tmp_path`, with a temporary folder of its own (to
    see that nothing is left in it) and output read as text."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp))
    return subprocess.Popen([sys.executable, "-m", "gradscope.cli", *args], cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_as_in_a_terminal)


def _ctrl_c_as_in_a_terminal() -> None:
    """SIGINT at its default in the child, as a terminal's Ctrl-C meets it. A runner that
    starts the tests in the background (`cmd &` in a script) leaves SIGINT ignored, the
    child inherits that, and Python then rightly never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def processes_using(folder: Path) -> list[str]:
    """Command lines of live processes that name `folder` (our layout children do)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmdline and "_layout_worker" in cmdline:
            found.append(cmdline)
    return found


def assert_nothing_left(tmp_path: Path) -> None:
    assert processes_using(tmp_path / "tmp") == []
    # (torch's own cache folder, made when the trace imports torch._dynamo, is not ours)
    assert [p for p in (tmp_path / "tmp").iterdir() if not p.name.startswith("torchinductor_")] == []


def test_a_graph_that_times_out_is_a_note_and_the_scripts_exit_code_is_kept(tmp_path):
    write(tmp_path, "chain.py", UNROLLED_3000)
    proc = start(tmp_path, "trace", "-o", "out", "--timeout", "0.3", "chain.py")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err  # the script succeeded: not 2
    assert out == "trained\n"
    notes = [line for line in err.splitlines() if "did not finish in 0.3 s" in line]
    assert len(notes) == 1 and "pass-000.dot" in notes[0] and "Traceback" not in err
    assert (tmp_path / "out" / "pass-000.dot").read_text().count("TanhBackward0") == 600
    assert "did not finish in 0.3 s" in (tmp_path / "out" / "report.html").read_text()
    assert len(load(tmp_path / "out" / "trace.json").passes) == 1
    assert_nothing_left(tmp_path)


def test_drawing_ends_within_the_budget_and_says_how_to_draw_the_rest(tmp_path):
    write(tmp_path, "lstm.py", UNROLLED_3000)
    began = time.monotonic()
    proc = start(tmp_path, "trace", "-o", "out", "--layout-budget", "2", "lstm.py")
    out, err = proc.communicate(timeout=300)
    took = time.monotonic() - began
    assert proc.returncode == 0, err
    assert out == "trained\n"
    # Graphviz alone needs minutes for this graph; a generous bound for a loaded machine
    assert took < 45, f"gradscope took {took:.0f} s with a 2 s layout budget"
    assert "1 graph(s) not drawn, the layout budget ran out (--layout-budget): pass 0" in err
    report = (tmp_path / "out" / "report.html").read_text()
    trace_json, svg = tmp_path / "out" / "trace.json", tmp_path / "out" / "pass-000.svg"
    assert (f"not drawn: the layout budget (2 s) ran out; draw it later with: "
            f"gradscope render {trace_json} --pass 0 -o {svg}") in report
    assert not svg.exists()
    assert len(load(trace_json).passes[0].graph.nodes) > 3000
    assert_nothing_left(tmp_path)


def test_unrolled_loops_are_drawn_folded_within_a_small_budget(tmp_path):
    """An LSTMCell over 200 steps and 5,000 multiplications in a loop: exit 0, drawn in a
    3 s budget, each loop once with how many times it ran."""
    write(tmp_path, "lstm.py", LSTM_200)
    write(tmp_path, "chain.py", CHAIN_5000)
    for script, nodes, note in (("lstm.py", 3000, "↻ ×200"), ("chain.py", 5000, "↻ ×5000")):
        out_dir = tmp_path / script.replace(".py", "-out")
        proc = start(tmp_path, "trace", "-o", out_dir.name, "--layout-budget", "3", script)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert out == "trained\n" and "not drawn" not in err and "Traceback" not in err
        svg = (out_dir / "pass-000.svg").read_text()
        assert note in svg and "loop steps at" in svg
        assert len(load(out_dir / "trace.json").passes[0].graph.nodes) > nodes
        # drawn once: a few dozen boxes, not thousands
        assert 3 <= svg.count('class="node"') < 60
        assert note in (out_dir / "report.html").read_text()
    assert_nothing_left(tmp_path)


def _wait_for_drawing(proc: subprocess.Popen, tmp_path: Path) -> None:
    deadline = time.monotonic() + 240
    while not processes_using(tmp_path / "tmp"):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "drawing never started"
        time.sleep(0.1)


def test_ctrl_c_or_sigterm_while_drawing_stops_it_and_writes_the_report(tmp_path):
    write(tmp_path, "lstm.py", UNROLLED_3000)
    for sig, code, name in [(signal.SIGINT, 130, "ctrl-c"), (signal.SIGTERM, 143, "sigterm")]:
        proc = start(tmp_path, "trace", "-o", name, "--layout-budget", "600", "lstm.py")
        _wait_for_drawing(proc, tmp_path)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err
        assert out == "trained\n" and "Traceback" not in err
        assert "not drawn, drawing was interrupted: pass 0" in err
        assert "not drawn: drawing was interrupted; draw it later with: gradscope render" in \
            (tmp_path / name / "report.html").read_text()
        assert len(load(tmp_path / name / "trace.json").passes) == 1
        assert_nothing_left(tmp_path)


def test_sigterm_while_the_script_runs_writes_what_was_captured_and_exits_143(tmp_path):
    write(tmp_path, "slow.py", """\
        import time, torch
        w = torch.ones(2, requires_grad=True)
        (w * 3).sum().backward()
        print("ready", flush=True)
        time.sleep(120)
        print("never")
        """)
    proc = start(tmp_path, "trace", "-o", "out", "slow.py")
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert out == "" and "Traceback" not in err
    saved = load(tmp_path / "out" / "trace.json")
    assert saved.meta["exit_code"] == 143
    assert saved.passes[0].graph.leaves[0].grad_after.value == [3.0, 3.0]
    assert (tmp_path / "out" / "pass-000.svg").exists() and (tmp_path / "out" / "report.html").exists()
    assert_nothing_left(tmp_path)


def test_graphs_are_drawn_in_order_of_use():
    """A pass a diagnostic points at first, then the most used graphs, then the rest."""
    passes = [chain(5), chain(6), chain(6), chain(6), chain(7), chain(7)]
    trace = Trace(passes=[Pass(index=i, api="Tensor.backward", graph=g) for i, g in enumerate(passes)],
                  diagnostics=[Diagnostic(code="GS101", severity="warning", title="t", message="m", pass_index=5)])
    assert drawing_order(trace) == [5, 1, 4, 0]
    assert drawing_order(trace, extra_passes=[3, 0]) == [5, 1, 4, 0, 3]


def test_work_meanwhile_runs_while_graphviz_lays_out_and_never_costs_a_picture(tmp_path):
    """`draw_all(meanwhile=)` (the report's charts, made while the pictures are laid
    out) runs once, before the layout is done; its error leaves the drawing as it was, a
    Ctrl-C in it stops the drawing as one anywhere else does."""
    from gradscope.render.dot import graph_to_dot
    from gradscope.render.drawing import Job, draw_all

    dot = graph_to_dot(chain(40))
    picture_then = []

    def failing():
        raise ValueError("a chart that fails")

    def interrupted():
        raise KeyboardInterrupt

    drawing = draw_all([Job(("pass", 0), dot, tmp_path / "a.svg")],
                       meanwhile=lambda: picture_then.append((tmp_path / "a.svg").exists()))
    assert picture_then == [False] and "<svg" in drawing.svgs[("pass", 0)] and drawing.stopped_by is None
    assert (tmp_path / "a.svg").exists()
    drawing = draw_all([Job(("pass", 0), dot, tmp_path / "b.svg")], meanwhile=failing)
    assert "<svg" in drawing.svgs[("pass", 0)] and drawing.stopped_by is None
    drawing = draw_all([Job(("pass", 0), dot, tmp_path / "c.svg")], meanwhile=interrupted)
    assert isinstance(drawing.stopped_by, KeyboardInterrupt) and drawing.not_drawn == [("pass", 0)]
    assert not (tmp_path / "c.svg").exists()


def test_a_ctrl_c_as_a_layout_child_starts_stops_that_child_too(tmp_path, monkeypatch):
    """A Ctrl-C that lands while a layout child is being started (the child runs, its
    `Popen` has not returned: a loaded CI machine hit this) stops the drawing with that
    child noted down: it is killed and its graph reported not drawn, never laid out again
    by the report while a second Ctrl-C is deferred."""
    from gradscope.render import drawing as drawing_module
    from gradscope.render.dot import graph_to_dot
    from gradscope.render.drawing import Job, draw_all

    started: list[subprocess.Popen] = []

    def start_then_ctrl_c(*args):
        proc = real_start(*args)
        started.append(proc)
        os.kill(os.getpid(), signal.SIGINT)  # (the signal itself, as a terminal sends it)
        time.sleep(0.2)  # (Python raises it at the next instruction: here, unless held)
        return proc

    real_start = drawing_module.start_layout
    monkeypatch.setattr(drawing_module, "start_layout", start_then_ctrl_c)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # (pytest run in the background: ignored)
    try:
        drawing = draw_all([Job(("pass", 0), graph_to_dot(chain(40)), tmp_path / "a.svg"),
                            Job(("pass", 1), graph_to_dot(chain(41)), tmp_path / "b.svg")], workers=1)
    finally:
        signal.signal(signal.SIGINT, before)
    assert isinstance(drawing.stopped_by, KeyboardInterrupt)
    assert drawing.not_drawn == [("pass", 0), ("pass", 1)] and drawing.svgs == {}
    assert len(started) == 1 and started[0].returncode is not None  # killed and reaped
