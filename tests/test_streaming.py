"""A run killed with SIGKILL leaves a trace: passes are written as they finish."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import gradscope
from conftest import ROOT, run_gradscope

KILLED_AT = 7
LOOP = f"""\
    import os, signal, sys
    import torch, gradscope
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def train():
        for step in range(100):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            print("step", step, loss.item(), flush=True)
            if step == {KILLED_AT}:
                os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_run(tmp_path, body: str, *command: str) -> subprocess.CompletedProcess:
    (tmp_path / "train.py").write_text(textwrap.dedent(LOOP) + textwrap.dedent(body))
    r = subprocess.run([sys.executable, *command], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert r.stdout.splitlines()[-1].startswith(f"step {KILLED_AT} ")
    return r


def check_cut_short(path, losses: list[float]) -> gradscope.Trace:
    t = gradscope.load(path)
    assert len(t.passes) >= KILLED_AT  # the passes up to N - 1, at least
    assert [p.index for p in t.passes] == list(range(len(t.passes)))
    assert "stopped before gradscope finished" in t.meta["incomplete"]
    for p, loss in zip(t.passes, losses):
        assert p.graph.roots[0].value == loss  # the numbers of each pass, as the run printed them
        assert all(leaf.grad_after is not None for leaf in p.graph.leaves)
    return t


def losses(r: subprocess.CompletedProcess) -> list[float]:
    return [float(line.split()[2]) for line in r.stdout.splitlines() if line.startswith("step ")]


def test_a_run_killed_inside_trace_save_leaves_a_readable_trace(tmp_path):
    r = killed_run(tmp_path, """\
        with gradscope.trace(save="trace.json"):
            train()
    """, "train.py")
    t = check_cut_short(tmp_path / "trace.json", losses(r))
    assert t.passes[KILLED_AT - 1].step == KILLED_AT - 1 and t.meta["options"]["every"] == 10
    render = run_gradscope("render", "trace.json", "-o", "report.html", cwd=tmp_path)
    assert render.returncode == 0, render.stderr
    assert "stopped before gradscope finished" in (tmp_path / "report.html").read_text()


def test_a_killed_gradscope_trace_command_leaves_a_readable_trace(tmp_path):
    r = killed_run(tmp_path, "train()\n", "-m", "gradscope.cli", "trace", "-o", "out", "train.py")
    check_cut_short(tmp_path / "out" / "trace.json", losses(r))
    render = run_gradscope("render", "out/trace.json", cwd=tmp_path)
    assert render.returncode == 0, render.stderr
    assert (tmp_path / "out" / "report.html").exists()


def test_a_finished_run_replaces_its_stream_with_the_whole_trace(tmp_path):
    (tmp_path / "train.py").write_text(textwrap.dedent(LOOP).replace(f"step == {KILLED_AT}", "False")
                                       + "with gradscope.trace(save='trace.json') as t:\n    train()\n")
    r = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "trace.json").read_text())  # one JSON document, not a stream
    assert data["version"] == 2 and len(data["passes"]) == 100 and "stream" not in data
    assert "incomplete" not in gradscope.load(tmp_path / "trace.json").meta


def test_an_event_after_the_last_pass_survives_a_kill(tmp_path):
    """A diagnostic's cause that comes after the run's last pass is in the stream at once."""
    (tmp_path / "train.py").write_text(textwrap.dedent(LOOP).replace(f"step == {KILLED_AT}", "False")
                                       .replace("range(100)", "range(3)") + textwrap.dedent("""\
        with gradscope.trace(save="trace.json"):
            train()
            hidden = model[0](x)
            print("read", hidden.grad, flush=True)  # .grad of a non-leaf: always None
            os.kill(os.getpid(), signal.SIGKILL)
    """))
    r = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert r.stdout.splitlines()[-1] == "read None"
    t = gradscope.load(tmp_path / "trace.json")
    assert "stopped before gradscope finished" in t.meta["incomplete"] and len(t.passes) == 3
    (read,) = [e for e in t.events if e.kind == "nonleaf-grad-read"]
    assert read.pass_index == 3 and read.source.code.startswith('print("read", hidden.grad, flush=True)')
    assert [d.code for d in t.diagnostics if d.code == "nonleaf-grad"] == ["nonleaf-grad"]
    # routine events (optimizer steps) go with the next record: the first two steps' are there
    assert [e.data["step"] for e in t.events if e.kind == "optimizer-step"] == [1, 2, 3]


def train(steps: int, inf_from: int | None = None) -> None:
    """A small model's training loop, in this process (from `inf_from` on: an Inf target)."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    for step in range(steps):
        opt.zero_grad()
        target = y if inf_from is None or step < inf_from else y * float("inf")
        torch.nn.functional.mse_loss(model(x), target).backward()
        opt.step()


def test_a_streamed_trace_is_saved_from_its_stream_and_is_the_same_trace(tmp_path, monkeypatch):
    """Saving copies the pass records the stream wrote (none is encoded again), keeps
    only the passes the trace kept (keep=), and loads back equal to the trace in memory,
    non-finite numbers included."""
    from gradscope.traceio import v2
    from test_traceio import same_trace

    with gradscope.trace(stream=tmp_path / "stream.json", keep=12) as t:
        train(40, inf_from=30)  # the last passes: Inf and NaN gradients
    kept = [p.index for p in t.passes]
    assert len(kept) < 40 and kept[-1] == 39 and any(p.edge_gradients for p in t.passes)

    encoded = []
    pass_record = v2.Encoder.pass_record
    monkeypatch.setattr(v2.Encoder, "pass_record", lambda self, p: encoded.append(p.index) or pass_record(self, p))
    path = t.save(tmp_path / "trace.json")
    assert encoded == []  # every pass came from the stream
    data = json.loads(path.read_text())
    assert data["version"] == 2 and [p["index"] for p in data["passes"]] == kept and "stream" not in data
    same_trace(t.trace, gradscope.load(path))

    # a pass the stream never wrote (here: one made by hand) and the trace is encoded whole
    t.trace.passes.append(t.trace.passes[-1].__class__(**{**t.trace.passes[-1].__dict__, "index": 40}))
    path = t.save(tmp_path / "again.json")
    assert encoded and encoded[-1] == 40
    same_trace(t.trace, gradscope.load(path))


def test_a_held_runs_events_are_saved_from_the_stream_as_written_and_those_held_anew(tmp_path):
    """As `gradscope trace` saves a long run (a sample held, every pass in the stream):
    the events the run let go are copied from the stream's text, those it still holds are
    encoded anew (capture may complete one after writing it), all in order."""
    with gradscope.trace(stream=tmp_path / "stream.json", _hold=20) as t:
        train(300)
    streamed = [e for line in (tmp_path / "stream.json").read_text().splitlines() if line.startswith('{"events"')
                for e in json.loads(line)["events"]]
    step = t.trace.events[-2]  # (the last step's: then its leaf update)
    assert step.kind == "optimizer-step" and "update_norms" not in streamed[-2]["data"]
    step.data.update_norms = {"0.weight": 0.125}  # (as if completed after it was written)
    saved = json.loads(t.save(tmp_path / "trace.json").read_text())["events"]
    assert len(saved) == len(streamed) == 600 and len(t.trace.events) < 200  # most were let go
    assert saved[:-2] == streamed[:-2] and saved[-1] == streamed[-1]
    assert saved[-2] == {**streamed[-2], "data": {**streamed[-2]["data"], "update_norms": {"0.weight": 0.125}}}
