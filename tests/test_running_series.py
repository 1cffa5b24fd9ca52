"""Series gathered as a run goes (gradscope.series.running): equal to the series of every
pass on a real training loop, bounded past `envelope.CAP` points with exact counts and
extremes; a traced run that holds a sample of its passes in memory still saves every pass
and event, and its report charts all of them (headless Chromium)."""

from __future__ import annotations

import json
import math
import random
import re
import statistics
import textwrap

import pytest
import torch
from conftest import run_gradscope
from test_charts import LAYERS, Deep
from test_report_browser import chromium, console_errors

import gradscope
from gradscope.capture import full_passes, steady
from gradscope.cli import HOLD_PASSES
from gradscope.render.charts import envelope
from gradscope.render.stats import parameter_stats
from gradscope.series import leaf_series, leaf_series_of_passes, loss_series, running_of
from gradscope.series.envelope import CAP, GradStats, Points
from gradscope.traceio.keep import HELD_KEY

STEPS = 40


def real_loop(**options) -> gradscope.trace:
    """The Deep model of test_charts trained with SGD, plus what a real loop varies: a
    parameter used every third step only, two optimizer steps between some passes, and a
    named tensor updated by hand (its ‖Δw‖ from its recorded values)."""
    torch.manual_seed(0)
    model = Deep()
    extra = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.SGD([p for n, p in model.named_parameters() if n != "frozen"] + [extra], lr=0.01)
    x = torch.randn(16, 8)
    with gradscope.trace(**options) as t:
        scale = torch.full((3,), 2.0, requires_grad=True)
        for step in range(STEPS):
            opt.zero_grad()
            loss = model(x) + (scale * 0.5).sum()
            if step % 3 == 0:
                loss = loss + extra.pow(2).sum()
            loss.backward()
            opt.step()
            if step % 5 == 0:
                opt.step()  # (a second step before the next pass: both moves count)
            with torch.no_grad():
                scale -= 0.1 * scale.grad
            scale.grad = None
    return t


def test_running_series_equal_the_series_of_every_pass_of_a_real_loop():
    t = real_loop(keep=10 * STEPS)  # keep= gathers running series; nothing is let go here
    running = running_of(t.trace)
    assert running is not None and len(t.trace.passes) == STEPS
    live, from_passes = running.leaf_series(), leaf_series_of_passes(t.trace)
    assert leaf_series(t.trace) == live
    assert [s.name for s in live] == [s.name for s in from_passes]
    for a, b in zip(live, from_passes):  # every field, each named on failure
        for name in a.__dataclass_fields__:
            assert getattr(a, name) == getattr(b, name), (a.name, name)
    by = {s.name: s for s in live}
    assert by["extra"].passes == list(range(0, STEPS, 3)) and len(by["extra"].update_ratio) > STEPS // 3
    assert by["scale"].updates == STEPS and len(by["scale"].update_ratio) == STEPS - 1  # from its values
    assert by["root"].flags == ["nan"] and by["frozen"].flags == ["never updated"]
    assert len(live) == 2 * LAYERS + 5
    assert running.loss_series() == loss_series(t.trace.__class__(passes=t.trace.passes)) != []
    assert running.span() == (STEPS, 0, STEPS - 1)


def test_running_series_of_light_passes_equal_the_series_of_every_pass(monkeypatch):
    """A loop that goes steady and light (capture/light.py): the series gathered from each
    pass's own nodes (model.Repeat) are those of the whole trace."""
    # (else a short loop is all full passes; no share: which passes are full is then by
    # count, not by the clock, the same in both runs)
    monkeypatch.setattr(full_passes, "GRACE", 0.0)
    monkeypatch.setattr(full_passes, "SHARE", 0.0)
    monkeypatch.setattr(full_passes, "SHORT", 0)

    def loop(keep: int) -> gradscope.trace:
        torch.manual_seed(2)
        model = torch.nn.Sequential(torch.nn.Linear(5, 9), torch.nn.Tanh(), torch.nn.Linear(9, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(12, 5), torch.randn(12, 1)
        with gradscope.trace(keep=keep) as t:
            for _ in range(80):
                opt.zero_grad()
                loss = torch.nn.functional.mse_loss(model(x), y)
                loss.backward()
                opt.step()
        return t

    t = loop(keep=1000)  # (nothing let go)
    light = re.search(r"\(([\d,]+) of them from their numbers alone\)", t.trace.meta["steady_passes"])
    assert light and int(light.group(1)) >= 40
    running = running_of(t.trace)
    assert running is not None and len(t.trace.passes) == 80
    live, from_passes = running.leaf_series(), leaf_series_of_passes(t.trace)
    assert sorted(s.name for s in live) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    for a, b in zip(live, from_passes, strict=True):
        for name in a.__dataclass_fields__:
            assert getattr(a, name) == getattr(b, name), (a.name, name)
    assert live[0].updates == 80 and len(live[0].grad_norm) == 80
    assert running.loss_series() == loss_series(t.trace.__class__(passes=t.trace.passes)) != []
    # passes let go as the run goes (the held sample thins repeats too): the same series
    thinned = loop(keep=20)
    assert len(thinned.trace.passes) <= 30 and running_of(thinned.trace).leaf_series() == live


def test_points_past_the_cap_keep_counts_extremes_spikes_and_nan_in_bounded_memory():
    rng = random.Random(0)
    n = 50 * CAP
    ys = [1.0 + rng.random() for _ in range(n)]
    ys[1234], ys[4321], ys[9000] = 1e6, 1e-6, math.nan
    points, stats = Points(), GradStats()
    for x, y in enumerate(ys):
        points.add(x, y if x != 77 else None)
        stats.add(y if x != 77 else None)
    assert not points.exact and points.count == n
    assert points.cols is not None and len(points.cols[0]) <= CAP  # bounded: at most CAP buckets
    xs, held = points.points()
    assert len(xs) <= 3 * CAP and xs == sorted(xs)
    assert dict(zip(xs, held))[1234] == 1e6 and dict(zip(xs, held))[4321] == 1e-6
    assert any(y is not None and math.isnan(y) for y in held)
    finite = [y for x, y in enumerate(ys) if math.isfinite(y) and x != 77]
    assert min(y for y in held if math.isfinite(y)) == min(finite)
    assert max(y for y in held if math.isfinite(y)) == max(finite)
    bands = envelope(xs, held)  # what a chart draws: the true extremes, the NaN marked
    assert max(b.hi for b in bands if b.hi is not None) == 1e6 and sum(b.bad for b in bands) == 1
    # counts and extremes exact; medians from log-spaced bins, within 2.2 %
    assert (stats.with_grad, stats.nonfinite) == (n - 1, 1)
    assert (stats.first, stats.last, stats.lo, stats.hi) == (finite[0], finite[-1], 1e-6, 1e6)
    assert stats.median(positive=False) == pytest.approx(statistics.median(finite), rel=0.022)


def test_points_within_the_cap_are_exact():
    points = Points()
    for x in range(CAP):
        points.add(x, None if x % 7 == 0 else x * 0.5)
    assert points.exact and points.points() == (list(range(CAP)), [None if x % 7 == 0 else x * 0.5
                                                                   for x in range(CAP)])


LONG = 6 * CAP  # past the cap: the running series are buckets


def long_loop(path) -> gradscope.trace:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    with gradscope.trace(stream=path, _hold=20) as t:  # as `gradscope trace` runs a script
        for _ in range(LONG):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    return t


def test_a_run_holding_a_sample_saves_every_pass_and_event(tmp_path):
    t = long_loop(tmp_path / "stream.json")
    held = t.trace
    assert 8 <= len(held.passes) <= 20 and held.passes[0].index == 0 and held.passes[-1].index == LONG - 1
    most = int(re.search(r"at most (\d+) at once", held.meta[HELD_KEY]).group(1))
    assert most <= 2 * 20 + 20 // 8 + 2  # what memory held while the run went
    assert len(held.events) < 2 * 20 + 2 * 256  # routine events thinned with their passes
    held.save(tmp_path / "trace.json")
    saved = json.loads((tmp_path / "trace.json").read_text())
    assert len(saved["passes"]) == LONG and HELD_KEY not in saved["meta"]
    loaded = gradscope.load(tmp_path / "trace.json")
    assert [p.index for p in loaded.passes] == list(range(LONG))
    steps = [e.data["step"] for e in loaded.events if e.kind == "optimizer-step"]
    assert steps == list(range(1, LONG + 1))
    assert len([e for e in loaded.events if e.kind == "leaf-update"]) == LONG
    # the held trace's table is the whole run's: counts and extremes equal those of every pass
    live = {r.name: r for r in parameter_stats(held)}
    whole = {r.name: r for r in parameter_stats(loaded)}
    assert live == whole and live["0.weight"].passes == LONG
    # and so are its series' extremes, though held as buckets
    for a, b in zip(leaf_series(held), leaf_series(loaded)):
        assert a.thinned is not None and a.name == b.name and a.updates == b.updates == LONG
        assert (min(a.finite_grads()), max(a.finite_grads())) == (min(b.finite_grads()), max(b.finite_grads()))
        assert max(r for _, r in a.update_ratio) == max(r for _, r in b.update_ratio)


SCRIPT = """\
    import torch
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    for step in range({steps}):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
"""


def test_gradscope_trace_writes_every_pass_and_charts_them_all_from_a_sample_in_memory(tmp_path):
    steps = 3 * HOLD_PASSES + 50
    (tmp_path / "train.py").write_text(textwrap.dedent(SCRIPT.format(steps=steps)))
    r = run_gradscope("trace", "-o", "out", "train.py", cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    saved = json.loads((tmp_path / "out" / "trace.json").read_text())
    assert [p["index"] for p in saved["passes"]] == list(range(steps)) and HELD_KEY not in saved["meta"]
    assert sum(e["kind"] == "optimizer-step" for e in saved["events"]) == steps
    report = tmp_path / "out" / "report.html"
    out = chromium(report, tmp_path / "profile", "--dump-dom")
    assert out.returncode == 0, out.stderr[-2000:]
    assert console_errors(out.stderr) == []
    dom = out.stdout
    held_text = re.search(rf"<th>{HELD_KEY}</th><td>([^<]*)</td>", dom).group(1)
    held = int(re.search(r"drawn from (\d+) of", held_text).group(1))
    # the header counts the run's passes, and says how many the pictures come from
    assert f'<p class="gs-summary">{steps} passes · 1 distinct graph, {held} held for the pictures' in dom
    assert held <= HOLD_PASSES + 2 and f"of {steps:,} passes held in memory" in held_text
    # (while it runs: 2 × the bound, and the few let go that wait to be dropped together)
    assert int(re.search(r"at most (\d+) at once", held_text).group(1)) <= 2 * HOLD_PASSES + HOLD_PASSES // 8 + 2
    section = dom[dom.index('<section id="over-time">'):]
    section = section[:section.index("</section>")]
    assert f"These charts cover all {steps:,} passes of the run" in section
    assert f"drawn from the {held} passes held in memory" in section
    grads = re.findall(r'<svg class="gs-chart" data-series="grad"[^>]*data-points="(\d+)"', section)
    assert grads == [str(steps)] * 4  # every parameter, every pass
    [loss] = re.findall(r'<svg class="gs-chart" data-series="loss"[^>]*data-points="(\d+)"', section)
    assert loss == str(steps)
    # the charts' extremes are those of every pass in trace.json
    whole = gradscope.load(tmp_path / "out" / "trace.json")
    grad0 = [p.graph.find("0.weight").grad_after.norm for p in whole.passes]
    drawn = re.search(r'data-param="0.weight".*?data-series="grad" data-min="([^"]*)" data-max="([^"]*)"',
                      section, flags=re.S)
    assert (float(drawn.group(1)), float(drawn.group(2))) == (min(grad0), max(grad0))


def test_a_held_run_saves_diagnostics_pointing_at_the_files_own_events(tmp_path, monkeypatch):
    """A diagnostic that points at an event (its graph) still points at it in trace.json,
    though memory let go of the routine events before it."""
    # (the recorder stays on: the refused in-place edit is what only the recorder sees)
    monkeypatch.setattr(steady, "STEADY_AFTER", 10**9)
    torch.manual_seed(0)
    w = torch.ones(3, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.01)
    with gradscope.trace(stream=tmp_path / "stream.json", _hold=8) as t:
        for step in range(1200):
            opt.zero_grad()
            (w * w).sum().backward()
            opt.step()
            if step == 1100:
                pending = (w * 2).sum()  # a graph that read w: the event holds it
                try:
                    w.add_(1)  # a leaf that requires grad, edited in place: refused
                except RuntimeError:
                    pass
                del pending
    [held] = [d for d in t.trace.diagnostics if d.code == "leaf-inplace"]
    assert held.event_index is not None and t.trace.events[held.event_index].kind == "leaf-inplace-error"
    assert len(t.trace.events) < 1200  # routine events let go with their passes
    t.trace.save(tmp_path / "trace.json")
    loaded = gradscope.load(tmp_path / "trace.json")
    assert len(loaded.passes) == 1200 and sum(e.kind == "optimizer-step" for e in loaded.events) == 1200
    [saved] = [d for d in loaded.diagnostics if d.code == "leaf-inplace"]
    event = loaded.events[saved.event_index]
    assert event.kind == "leaf-inplace-error" and event.graph is not None
    assert saved.event_index > held.event_index  # the file's number, not memory's
    assert event.pass_index == 1101


def test_a_held_run_whose_stream_is_gone_saves_its_sample_and_says_so(tmp_path):
    w = torch.ones(3, requires_grad=True)
    stream = tmp_path / "stream.json"
    with gradscope.trace(stream=stream, _hold=8) as t:
        for _ in range(300):
            w.grad = None
            (w * w).sum().backward()
    assert "in_memory" in t.trace.meta
    stream.write_text(stream.read_text()[:200])  # (a disk that lost it)
    saved = gradscope.load(t.trace.save(tmp_path / "trace.json"))
    assert len(saved.passes) == len(t.passes) < 300 and "in_memory" not in saved.meta
    assert saved.meta["sampling"] == (f"only the {len(t.passes)} passes held in memory were saved, of the "
                                      "run's 300: its stream could not be read back")
