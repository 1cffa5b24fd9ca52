"""Steady passes (capture/steady.py): once a loop repeats itself, its passes are recorded
with the recorder off the mode stack, and the trace says exactly what it said before."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import torch.nn as nn
from test_numbers_unchanged import assert_bitwise_equal, assert_nothing_installed
from torch.overrides import TorchFunctionMode, _get_current_function_mode
from torch.utils.checkpoint import checkpoint

import gradscope
from gradscope.capture import full_passes, steady
from gradscope.capture._torch import engine_backward

# A training loop whose graph repeats, except where a step changes something.
LOOP = """\
    import torch, torch.nn as nn, gradscope
    from torch.autograd import grad  # bound before the trace: steady passes still see it
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(32, 4)  # (outputs of over 16 elements: no op value to show but the loss's)
    for step in range(60):
        opt.zero_grad()
        h = model(x)
        if step == 20:
            h = h * 2.0  # one more op: a graph the steady pass has not seen
        loss = h.pow(2).mean()
        if step == 30:
            loss.backward(torch.tensor(2.0))  # a seed of its own
        elif step == 40:
            grads = grad(loss, list(model.parameters()))  # autograd.grad, imported by name
        else:
            loss.backward()
        opt.step()
"""


@pytest.fixture(autouse=True)
def few_full_passes(monkeypatch):
    """Short loops are recorded in full while that is cheap (full_passes.py), and full passes
    make no template to repeat: here the first passes are full, then none, by count."""
    monkeypatch.setattr(full_passes, "GRACE", 0.0)
    monkeypatch.setattr(full_passes, "SHORT", 0)


# Gradient accumulation (gradients carried across passes on purpose) with a GradScaler.
ACCUMULATING_LOOP = """\
    import torch, torch.nn as nn
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 12), nn.GELU(), nn.Linear(12, 3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    for step in range(80):
        loss = nn.functional.cross_entropy(model(x), y) / 4
        scaler.scale(loss).backward()
        if step % 4 == 3:
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
"""


def _run(tmp_path, monkeypatch, steady_on: bool, loop: str = LOOP) -> gradscope.trace:
    path = tmp_path / "loop.py"
    path.write_text(textwrap.dedent(loop))
    with monkeypatch.context() as m:
        if not steady_on:
            m.setattr(steady, "STEADY_AFTER", 10**9)
        with gradscope.trace() as t:
            exec(compile(path.read_text(), str(path), "exec"), {"__name__": "__main__", "__file__": str(path)})
    return t


def test_steady_passes_record_what_the_recorder_would(tmp_path, monkeypatch):
    on, off = _run(tmp_path, monkeypatch, True), _run(tmp_path, monkeypatch, False)
    assert "steady_passes" not in off.trace.meta
    steady_meta = on.trace.meta.pop("steady_passes")
    count = int(steady_meta.split(" of ")[0])
    assert count >= 30, steady_meta  # most of the loop ran with the recorder off
    assert [_event(e) for e in on.trace.events] == [_event(e) for e in off.trace.events]
    # pass by pass, graph and numbers, the same: but for pass 20, whose changed graph ran
    # with the recorder off (see the next test)
    differ = [k for k, (p, q) in enumerate(zip(on.passes, off.passes)) if _pass_json(p) != _pass_json(q)]
    assert differ == [20] and len(on.passes) == len(off.passes) == 60
    # the numbers a pass shows: the loss (root), each parameter's .grad
    last = on.passes[-1].graph
    assert last.roots[0].name == "loss" and last.roots[0].source.line == 12
    assert [n.name for n in last.leaves] == ["2.bias", "2.weight", "0.bias", "0.weight"]
    assert on.passes[30].graph.roots[0].seed.value == 2.0
    assert on.passes[40].api == "torch.autograd.grad" and on.passes[39].api == "Tensor.backward"


def test_light_passes_record_and_stream_what_the_recorder_would(tmp_path, monkeypatch):
    """Steady passes recorded from their numbers alone (light.py) are the same passes, in
    memory and in the stream a killed run would leave."""
    records = {}
    for steady_on in (True, False):
        stream = tmp_path / f"stream-{steady_on}.json"
        path = tmp_path / "loop.py"
        path.write_text(textwrap.dedent(LOOP))
        with monkeypatch.context() as m:
            if not steady_on:
                m.setattr(steady, "STEADY_AFTER", 10**9)
            with gradscope.trace(stream=stream) as t:
                exec(compile(path.read_text(), str(path), "exec"), {"__name__": "__main__", "__file__": str(path)})
        loaded = gradscope.load(stream)
        assert [_pass_json(p) for p in loaded.passes] == [_pass_json(p) for p in t.passes]
        assert [_event(e) for e in loaded.events] == [_event(e) for e in t.trace.events]
        records[steady_on] = [_pass_json(p) for p in t.passes]
        if steady_on:
            light = int(t.trace.meta["steady_passes"].split("(")[1].split(" of them")[0])
            assert light >= 25, t.trace.meta["steady_passes"]  # most steady passes were light
        lines = stream.read_text().splitlines()
        # a light pass's line: its loss, its parameters' .grad norms, and nothing else
        last = json.loads(next(line for line in reversed(lines) if line.startswith('{"pass"')))["pass"]
        assert last["index"] == 59 and not last["edge_gradients"] and len(last["nodes"]) == 5
    differ = [k for k, (p, q) in enumerate(zip(records[True], records[False])) if p != q]
    assert differ == [20]


def test_an_accumulating_scaled_loop_goes_steady_and_records_the_same(tmp_path, monkeypatch):
    on, off = (_run(tmp_path, monkeypatch, steady_on, ACCUMULATING_LOOP) for steady_on in (True, False))
    assert int(on.trace.meta.pop("steady_passes").split(" of ")[0]) >= 50
    # the same but for the small values of ops other than the roots (the loss before it is
    # scaled): steady passes do not read them
    for p in off.passes:
        for n in p.graph.nodes:
            if n.kind == "op" and not n.is_root and n.value is not None and on.passes[p.index].graph.find(n.name).value is None:
                n.value = None
    assert [_pass_json(p) for p in on.passes] == [_pass_json(p) for p in off.passes]
    assert [_event(e) for e in on.trace.events] == [_event(e) for e in off.trace.events]
    # three of every four passes found the .grad the one before left (accumulation)
    carried = [p.index for p in on.passes if p.graph.find("0.weight").grad_carried_over]
    assert carried[:6] == [1, 2, 3, 5, 6, 7] and len(carried) == 60


def _event(e) -> tuple:
    return e.kind, e.pass_index, e.source.line if e.source else None, json.dumps(e.data.to_dict())


def _pass_json(p) -> str:
    """A pass as saved: its whole graph (structure and names) and its numbers."""
    return json.dumps(gradscope.Trace(passes=[p]).to_dict())


def test_a_changed_graph_in_a_steady_run_is_recorded_and_the_recorder_comes_back(tmp_path, monkeypatch):
    t = _run(tmp_path, monkeypatch, True)
    changed = t.passes[20].graph
    # its ops ran with the recorder off: named from their autograd classes, without lines
    assert [n.name for n in changed.nodes if n.kind == "op"][:3] == ["mean", "pow", "mul"]
    assert all(n.source is None for n in changed.nodes if n.kind == "op")
    # the recorder is back for the next forward: lines and names again
    after = t.passes[21].graph
    assert after.roots[0].name == "loss" and after.find("h").source.line == 9


def test_steady_run_leaves_nothing_installed_and_numbers_unchanged():
    original_engine = engine_backward()

    def train():
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 2))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        x, y = torch.randn(32, 6), torch.randn(32, 2)
        losses = []
        for _ in range(50):
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        out = {f"p{k}": p.detach().clone() for k, p in enumerate(model.parameters())}
        out["losses"] = torch.stack(losses)
        return out

    plain = train()
    with gradscope.trace() as t:
        traced = train()
    assert_bitwise_equal(plain, traced)
    assert "steady" in t.trace.meta.get("steady_passes", "")
    assert engine_backward() is original_engine
    assert_nothing_installed()
    losses = [p.graph.roots[0].value for p in t.passes]
    assert losses == pytest.approx(plain["losses"].tolist())


def test_steady_run_that_raises_mid_loop_restores_everything():
    model = nn.Linear(3, 1)
    x = torch.randn(4, 3)
    original_engine = engine_backward()
    with pytest.raises(KeyError):
        with gradscope.trace() as t:
            for step in range(30):
                model.zero_grad()
                model(x).sum().backward()
                if step == 25:
                    raise KeyError("the user's own error")
    assert "steady" in t.trace.meta.get("steady_passes", "")
    assert engine_backward() is original_engine
    assert_nothing_installed()


def test_in_place_error_in_a_steady_pass_is_reported_and_ends_steadiness():
    model = nn.Linear(8, 8)
    x = torch.randn(4, 8)
    with gradscope.trace() as t:
        for step in range(30):
            model.zero_grad()
            h = model(x)
            y = torch.sigmoid(h)
            if step == 20:
                with torch.no_grad():
                    y.mul_(2)  # sigmoid saved its output: backward must fail
            try:
                y.sum().backward()
            except RuntimeError:
                pass
    assert int(t.trace.meta["steady_passes"].split(" of ")[0]) >= 10
    errors = [e for e in t.trace.events if e.kind == "backward-error"]
    assert len(errors) == 1 and t.passes[20].error and errors[0].source.line == t.passes[19].source.line
    # explained from torch's message (the recorder did not see the edit, so no line of it)
    diagnostic = next(d for d in t.trace.diagnostics if d.code == "saved-tensor-modified")
    assert diagnostic.pass_index == 20 and "set_detect_anomaly" in diagnostic.hint
    # the recorder is back on for the passes after it
    assert t.passes[21].graph.roots[0].source is not None and t.passes[22].graph.find("h").source.line


MODELS = {
    "conv_bn_inplace": lambda: (nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                                              nn.Flatten(), nn.Linear(4 * 6 * 6, 8)), torch.randn(3, 2, 8, 8)),
    "transformer_dropout": lambda: (nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True),
                                    torch.randn(2, 5, 8)),
    "gru": lambda: (nn.GRU(4, 6, batch_first=True), torch.randn(2, 7, 4)),
}


def _loss(model, x):
    out = model(x)
    return (out[0] if isinstance(out, tuple) else out).pow(2).mean()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_zoo_long_loops_are_bitwise_identical_and_go_steady(name):
    def train():
        torch.manual_seed(11)
        model, x = MODELS[name]()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(25):
            opt.zero_grad()
            _loss(model, x).backward()
            opt.step()
        out = {n: p.detach().clone() for n, p in model.named_parameters()}
        out["rng"] = torch.rand(4)  # dropout's random stream untouched
        return out

    plain = train()
    with gradscope.trace() as t:
        traced = train()
    assert_bitwise_equal(plain, traced)
    assert int(t.trace.meta["steady_passes"].split(" of ")[0]) >= 10


def test_checkpointed_graphs_never_go_steady():
    """A node whose saved tensors have hooks must never be called: such graphs keep the recorder."""
    lin = nn.Linear(4, 4)
    x = torch.randn(2, 4, requires_grad=True)
    with gradscope.trace() as t:
        for _ in range(20):
            lin.zero_grad()
            checkpoint(lambda a: torch.tanh(lin(a)), x, use_reentrant=False).sum().backward()
    assert len(t.passes) == 20 and "steady_passes" not in t.trace.meta


def test_small_op_values_are_read_on_the_recorders_passes_only():
    """An op's small forward value (outputs of at most `values` elements) is read from the
    op's output, which only the recorder holds: steady passes show the roots' values (the
    loss) and none for other ops; the passes recorded with the recorder show them all."""
    model, x = nn.Linear(3, 3), torch.randn(3)
    with gradscope.trace() as t:
        for step in range(120):
            model.zero_grad()
            h = model(x)  # three elements: shown on recorded passes
            loss = h.tanh().sum()
            loss.backward()
    assert int(t.trace.meta["steady_passes"].split(" of ")[0]) >= 100
    assert "small values of ops other than the roots" in t.trace.meta["steady_passes"]
    with torch.no_grad():
        h = model(x)
    assert t.passes[100].graph.find("h").value == pytest.approx(h.tolist())  # the hundredth: recorded
    assert t.passes[99].graph.find("h").value is None and t.passes[101].graph.find("h").value is None
    assert t.passes[99].graph.find("loss").value == pytest.approx(h.tanh().sum().item())


class Count(TorchFunctionMode):
    calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        Count.calls += 1
        return func(*args, **(kwargs or {}))


def test_a_users_mode_entered_while_steady_stays_theirs():
    """The recorder goes back on the stack only as it left it: under a mode the user
    entered meanwhile it waits, else the user's `__exit__` would pop the recorder."""

    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
    x = torch.randn(4, 8)
    with gradscope.trace() as t:
        for step in range(40):
            model.zero_grad()
            if step == 20:
                with Count():  # entered while the recorder is off; the graph changes under it
                    (model(x) * 2.0).sum().backward()
                    assert isinstance(torch.overrides._get_current_function_mode(), Count)
                # theirs popped, not ours (ours went back as backward ran, under theirs)
                assert type(torch.overrides._get_current_function_mode()).__name__ == "RecordingMode"
            else:
                model(x).sum().backward()
    assert Count.calls > 0
    assert_nothing_installed()
    assert t.passes[20].graph.roots[0].source is None  # recorded steady, its ops unseen
    assert t.passes[22].graph.roots[0].source is not None  # the recorder back (at the next module call)
    assert len(t.passes) == 40


def test_going_back_waits_while_a_users_mode_is_on_top():
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
    x = torch.randn(4, 8)
    with gradscope.trace() as t:
        for _ in range(20):
            model(x).sum().backward()
        steady_passes = t._tracer.steady
        assert steady_passes.active
        with Count():
            steady_passes.step_back()  # the user's mode is on top: not now
            assert steady_passes.active and isinstance(_get_current_function_mode(), Count)
        model(x)  # the next module call: the stack is as the recorder left it
        assert not steady_passes.active and type(_get_current_function_mode()).__name__ == "RecordingMode"
    assert_nothing_installed()


def test_without_torchs_engine_entry_every_pass_keeps_the_recorder(monkeypatch):
    assert engine_backward() is not None  # (this torch has it: steady passes are used)
    monkeypatch.setattr(steady, "engine_backward", lambda: None)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
    x = torch.randn(4, 8)
    with gradscope.trace() as t:
        for _ in range(30):
            model(x).sum().backward()
    assert len(t.passes) == 30 and "steady_passes" not in t.trace.meta
    assert all(p.graph.roots[0].source is not None for p in t.passes)


def test_the_recorder_looks_every_hundredth_pass(monkeypatch):
    """What only the recorder sees is checked at least every `LOOK_EVERY` passes: a `.grad`
    read of a non-leaf that starts while the passes are steady is seen at the next
    hundredth pass, and from then on the recorder stays."""
    with_recorder = []
    original_record = gradscope.capture.passes.Passes.record

    def record(self, describe, run, api, steady=False, **kwargs):
        if not steady:
            with_recorder.append(self.state.next_pass_index)
        return original_record(self, describe, run, api, steady, **kwargs)

    monkeypatch.setattr(gradscope.capture.passes.Passes, "record", record)
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
    x = torch.randn(4, 8)
    with gradscope.trace() as t:
        for step in range(250):
            out = model(x)
            out.sum().backward()
            if step >= 120:
                out.grad  # a non-leaf's .grad (None): seen by the recorder only
    # the first passes (full, then the template and its repeats), the hundredth, and from
    # the two-hundredth on (the edit seen there, then on every pass)
    assert with_recorder == list(range(14)) + [100] + list(range(200, 250))
    seen = [e for e in t.trace.events if e.kind not in ("optimizer-step", "leaf-update", "grad-carried")]
    assert {e.kind for e in seen} == {"nonleaf-grad-read"} and [e.pass_index for e in seen][:2] == [200, 201]


def test_full_passes_of_a_steady_big_graph_match_the_recorders(tmp_path, monkeypatch):
    """A big graph's sampled passes record edge gradients with the recorder off too, and
    record the same as with it on (and the tiny Jacobians of its small edges)."""
    monkeypatch.setattr(full_passes, "GRACE", 100.0)  # every sampled pass within the budget: by count

    def run(steady_on: bool):
        with monkeypatch.context() as m:
            if not steady_on:
                m.setattr(steady, "STEADY_AFTER", 10**9)
            torch.manual_seed(5)
            model = nn.Sequential(nn.Linear(64, 1100), nn.ReLU(), nn.Linear(1100, 1))  # 70,400 outputs
            x = torch.randn(64, 64)
            opt = torch.optim.SGD(model.parameters(), lr=1e-3)
            with gradscope.trace(every=5) as t:
                for _ in range(31):
                    opt.zero_grad()
                    model(x).pow(2).mean().backward()
                    opt.step()
        return t

    on, off = run(True), run(False)
    assert on._tracer is None and int(on.trace.meta["steady_passes"].split(" of ")[0]) >= 15
    full = [p.index for p in on.passes if p.edge_gradients]
    assert full == [0, 1, 2, 5, 10, 15, 20, 25, 30] == [p.index for p in off.passes if p.edge_gradients]
    assert [_pass_json(p) for p in on.passes] == [_pass_json(p) for p in off.passes]
    last = on.passes[30].graph
    assert all(e.grad is not None for e in last.edges) and last.roots[0].grad.norm == 1.0


def test_another_threads_passes_keep_their_recorder_while_the_main_thread_is_steady():
    import threading

    def train(model, x, steps):
        for _ in range(steps):
            model.zero_grad()
            model(x).sum().backward()

    main, other = nn.Sequential(nn.Linear(8, 8), nn.Tanh()), nn.Sequential(nn.Linear(6, 6), nn.Sigmoid())
    with gradscope.trace() as t:
        train(main, torch.randn(4, 8), 20)  # steady by now
        worker = threading.Thread(target=train, args=(other, torch.randn(4, 6), 10))
        worker.start()
        train(main, torch.randn(4, 8), 20)
        worker.join()
        # (the module hooks the main thread's steady passes took off are back for the worker's)
        assert t._tracer is not None and t._tracer.modules._handles
    assert_nothing_installed()
    assert engine_backward() is torch.autograd.graph._engine_run_backward
    theirs = [p for p in t.passes if p.graph.leaves[0].shape == [6]]
    assert len(theirs) == 10 and all(p.graph.roots[0].source is not None for p in theirs)
    assert len(t.passes) == 50 and t._tracer is None


def test_module_hooks_are_off_while_steady_and_back_for_the_recorders_passes():
    """With any global module hook torch calls every module the slow way: steady passes
    take gradscope's off (no other thread records) and put them back for the recorder's
    passes (every 100th), whose ops are tagged with their modules again."""
    from torch.nn.modules import module as torch_modules

    hooks_seen = []

    class Probe(nn.Module):  # what a module call sees of the global hooks
        def forward(self, h):
            hooks_seen.append(len(torch_modules._global_forward_pre_hooks))
            return h

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), Probe(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(32, 4)
    with gradscope.trace() as t:
        for _ in range(130):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    assert_nothing_installed()
    assert hooks_seen[:3] == [1, 1, 1] and hooks_seen[100] == 1  # the recorder's passes
    assert hooks_seen[50:99] == [0] * 49 and hooks_seen[110:] == [0] * 20  # steady ones
    assert "which modules ran" in t.trace.meta["steady_passes"]
    relu = next(n for n in t.passes[100].graph.nodes if n.name.startswith("relu"))
    assert relu.module == "1" and t.passes[100].graph.module_calls


def test_a_leaf_edit_refused_while_steady_is_still_diagnosed_at_its_line():
    """PyTorch refuses an in-place edit of a leaf that requires grad; with the recorder off
    the stack, the error that ends the block is reported from its traceback instead."""
    model = nn.Linear(8, 8)
    x = torch.randn(4, 8)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        with gradscope.trace() as t:
            for step in range(40):
                model(x).sum().backward()
                if step == 30:
                    model.weight.add_(1)  # refused by PyTorch
    line = test_a_leaf_edit_refused_while_steady_is_still_diagnosed_at_its_line.__code__.co_firstlineno + 10
    assert "steady" in t.trace.meta["steady_passes"]
    [found] = [d for d in t.trace.diagnostics if d.code == "leaf-inplace"]
    assert found.title == "In-place add_ on `model.weight`, a leaf that requires grad"
    assert found.sources[0].line == line and found.sources[0].code == "model.weight.add_(1)  # refused by PyTorch"


def test_gradscope_trace_diagnoses_a_leaf_edit_that_ends_a_steady_script(tmp_path, gradscope_cmd):
    (tmp_path / "train.py").write_text(textwrap.dedent("""\
        import torch
        from torch import nn
        model = nn.Linear(8, 8)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.randn(16, 8)
        for step in range(600):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
            if step == 550:
                model.weight.add_(1)
        """))
    r = gradscope_cmd("trace", "-o", "out", "train.py")
    assert r.returncode == 1 and "RuntimeError: a leaf Variable that requires grad" in r.stderr
    assert "leaf-inplace In-place add_ on `model.weight`, a leaf that requires grad  train.py:11" in r.stderr
    saved = gradscope.load(tmp_path / "out" / "trace.json")
    assert len(saved.passes) == 551 and "steady" in saved.meta["steady_passes"]


def test_a_nested_trace_inside_a_steady_run_records_its_own_passes():
    """`gradscope trace`'s tracer yields to the script's own gradscope.trace(): while that runs,
    steady passes are the inner trace's, and the outer run goes on steady after it."""
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
    x = torch.randn(4, 8)

    def train(steps):
        for _ in range(steps):
            model.zero_grad()
            model(x).sum().backward()

    with gradscope.trace(_yields=True) as outer:
        train(30)
        assert outer._tracer.steady.active
        with gradscope.trace() as inner:
            train(5)
        train(30)
    assert len(inner.passes) == 5 and len(outer.passes) == 60
    assert all(p.graph.roots[0].source is not None for p in inner.passes[:1])
    assert [e.kind for e in outer.trace.events if e.kind == "nested-trace"] == ["nested-trace"]
    assert int(outer.trace.meta["steady_passes"].split(" of ")[0]) >= 40
    assert_nothing_installed()


def test_the_light_match_knows_its_graph_from_any_other():
    """A light pass recognises the template's graph by its autograd nodes alone: the same
    graph made again matches, numbered as the walk numbers it; each kind of difference
    does not (another class, an input more or less, one node where the template had two,
    another leaf tensor)."""
    from gradscope.capture.light import LightPlan

    a, b = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    c = torch.randn(3)

    def template_of(forward):
        with gradscope.trace() as t:
            for _ in range(full_passes.FIRST + 1):  # (the first passes are full: not templates)
                forward().backward()
                a.grad = b.grad = None
            return LightPlan.of(t._tracer.state.last_quiet, 16)

    plan = template_of(lambda: ((a * 2) * (b * 2)).sum())
    assert plan is not None
    fns = plan.match([((a * 2) * (b * 2)).sum()])
    assert fns is not None and [type(f).__name__ for f in fns][:2] == ["SumBackward0", "MulBackward0"]
    assert sorted(id(fns[k].variable) for k in plan.leaves) == sorted([id(a), id(b)])
    assert plan.match([((a * 2) + (b * 2)).sum()]) is None  # another class
    assert plan.match([((a * 2) * (b * a)).sum()]) is None  # the same classes, an input more
    assert plan.match([((a * 2) * (a * 2)).sum()]) is None  # another leaf
    two = template_of(lambda: ((a * 2) * (a * 2)).sum())
    twice = a * 2
    assert two.match([(twice * twice).sum()]) is None  # one node where the template had two
    assert two.match([((a * 2) * (a * 2)).sum()]) is not None
    with_none = template_of(lambda: (a * c).sum())  # MulBackward0 with an input that needs no grad
    assert with_none.match([(a * c).sum()]) is not None
    assert with_none.match([(a * b).sum()]) is None  # an input where the template had none
    three = template_of(lambda: torch.cat([a * 2, b * 2, a * 3]).sum())  # (a class of any number of inputs)
    assert three.match([torch.cat([a * 2, b * 2, a * 3]).sum()]) is not None
    assert three.match([torch.cat([a * 2, b * 2]).sum()]) is None  # an input fewer
    assert three.match([torch.cat([a * 2, b * 2, a * 3, b * 3]).sum()]) is None  # an input more


def test_a_light_pass_makes_its_nodes_only_when_they_are_read(tmp_path):
    """A light pass keeps its numbers, not nodes (`model.LazyGraph`): the stream, the series
    and the held sample read the numbers as they are; the nodes are made the first time a
    reader asks, once, with the numbers the pass measured."""
    from gradscope.model import LazyGraph

    path = tmp_path / "loop.py"
    path.write_text(textwrap.dedent(LOOP))
    names = {"__name__": "__main__", "__file__": str(path)}
    with gradscope.trace(stream=tmp_path / "stream.json", _hold=100) as t:  # (as `gradscope trace` runs)
        exec(compile(path.read_text(), str(path), "exec"), names)
        light = [p for p in t.passes if isinstance(p.graph, LazyGraph)]
        # made: only the first light pass of each template, which the stream writes whole
        firsts = {id(p.graph.numbers.layout): p.index for p in reversed(light)}
        assert len(light) >= 25 and len(firsts) == 2  # (pass 20 changed the graph: a template anew)
        assert [p.index for p in light if p.graph.made] == sorted(firsts.values())
        last = t.passes[-1]
    # the trace's end (its diagnostics look at every pass) made none either
    assert [p.index for p in light if p.graph.made] == sorted(firsts.values())
    assert last is light[-1] and last.index == 59 and last.graph.roots[0].seed.value == 1.0
    assert not last.graph.made  # (its roots are the pass's own nodes, read without making it)
    nodes = last.graph.nodes
    assert last.graph.made and last.graph.nodes is nodes
    model = names["model"]
    weight, bias = last.graph.find("0.weight"), last.graph.find("2.bias")
    assert weight.grad_after.norm == pytest.approx(model[0].weight.grad.norm().item(), rel=1e-6)
    assert weight.grad_after.shape == [8, 4] and weight.value is None  # (32 elements: too many to keep)
    assert bias.grad_after.value == pytest.approx(model[2].bias.grad.tolist())  # one element: kept
    # its value as the forward used it: the step after the pass moved it by lr * grad
    assert bias.value == pytest.approx((model[2].bias + 0.05 * model[2].bias.grad).tolist())
    root = last.graph.roots[0]
    assert root.name == "loss" and any(n is root for n in nodes)  # (the same node, made or not)


def test_a_light_pass_whose_gradients_turn_nan_is_diagnosed_at_its_pass(tmp_path):
    """The trace's diagnostics read a light pass's numbers; the one pass whose `.grad`
    turned NaN is made (to name its leaves), the others are not, and saving the trace
    writes them from their numbers: the file holds what their nodes say."""
    from gradscope.model import LazyGraph

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(32, 4)
    with gradscope.trace() as t:
        for step in range(60):
            opt.zero_grad()
            model(x * float("nan") if step == 40 else x).pow(2).mean().backward()  # (the same graph)
            if step != 40:
                opt.step()
    assert isinstance(t.passes[40].graph, LazyGraph) and not t.passes[40].edge_gradients
    [found] = [d for d in t.trace.diagnostics if d.code == "nonfinite-gradient"]
    assert found.pass_index == 40 and "`2.bias`, `2.weight`" in found.title
    made = [p.index for p in t.passes if isinstance(p.graph, LazyGraph) and p.graph.made]
    assert 40 in made and len(made) <= 3  # (it, and the first light pass of each template)
    saved = gradscope.load(t.trace.save(tmp_path / "trace.json"))
    # (and the first light pass of each template, which the file holds whole)
    firsts = {id(p.graph.numbers.layout): p.index for p in reversed(t.passes) if isinstance(p.graph, LazyGraph)}
    assert [p.index for p in t.passes if isinstance(p.graph, LazyGraph) and p.graph.made] == \
        sorted(set(made) | set(firsts.values()))
    assert [_pass_json(p) for p in saved.passes] == [_pass_json(p) for p in t.passes]  # (made now)
    assert saved.passes[40].graph.find("2.bias").grad_after.nan == 1
