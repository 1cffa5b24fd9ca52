"""Gradients over time: per-leaf series from a real training run, the report's charts for
every parameter (grouped by module, worst first) in headless Chromium, a page that stays
small for thousands of passes, and envelopes that keep the true extremes."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from conftest import scalar
from test_report_browser import chromium, console_errors

import gradscope
from gradscope.model import Graph, Node, Pass, TensorSummary, Trace
from gradscope.render.charts import BUCKETS, envelope
from gradscope.render.html import trace_to_html
from gradscope.series import NAN, NEVER_UPDATED, VANISHING, leaf_series, loss_series

STEPS = 40
LAYERS = 16  # 32 parameters in the stack, 34 leaves in all: more than the small plots' 31


class Deep(torch.nn.Module):
    """A deep MLP plus two parameters that go wrong: `root`'s gradient is NaN (a sqrt of a
    negative number masked by `where`: forward fine, backward 0 * NaN) and `gate`'s is 1e-9
    of everyone else's."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(LAYERS)])
        self.root = torch.nn.Parameter(torch.tensor([-1.0, 4.0]))
        self.gate = torch.nn.Parameter(torch.ones(3))
        self.frozen = torch.nn.Parameter(torch.ones(2))  # left out of the optimizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + 0.1 * torch.tanh(layer(x))  # a small residual: the stack's gradients stay alike
        safe = torch.where(self.root > 0, torch.sqrt(self.root), torch.zeros_like(self.root))
        return x.pow(2).mean() + safe.sum() + 1e-9 * self.gate.sum() + 1e-3 * self.frozen.sum()


WEIGHTS: list[torch.Tensor] = []  # layers.0.weight before each step of the last `train()`


def train(steps: int = STEPS) -> tuple[gradscope.trace, list[float], list[list[float]]]:
    """The real loop under trace(): its losses and layers.0.bias before each step."""
    torch.manual_seed(0)
    model = Deep()
    opt = torch.optim.SGD([p for n, p in model.named_parameters() if n != "frozen"], lr=0.01)
    x = torch.randn(16, 8)
    losses, biases = [], []
    WEIGHTS.clear()
    with gradscope.trace() as t:
        for _ in range(steps):
            opt.zero_grad()
            loss = model(x)
            biases.append(model.layers[0].bias.detach().clone().tolist())
            WEIGHTS.append(model.layers[0].weight.detach().clone())
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return t, losses, biases


@pytest.fixture(scope="module")
def run():
    return train()


def test_series_of_a_real_run_flag_the_nan_and_the_vanishing_parameter_first(run):
    t, losses, biases = run
    series = leaf_series(t.trace)
    names = [s.name for s in series]
    assert len(series) == 2 * LAYERS + 3 and len(set(names)) == len(names)
    assert names[:3] == ["root", "gate", "frozen"]
    by = {s.name: s for s in series}
    assert by["root"].flags == [NAN] and by["root"].nonfinite == STEPS
    assert by["gate"].flags == [VANISHING]
    assert by["frozen"].flags == [NEVER_UPDATED] and by["frozen"].updates == 0
    assert all(not s.flags for s in series[3:]), [(s.name, s.flags) for s in series if s.flags]
    bias = by["layers.0.bias"]
    assert bias.module == "layers.0" and bias.passes == list(range(STEPS)) and bias.updates == STEPS
    assert bias.grad_norm[5] == pytest.approx(t.passes[5].graph.find("layers.0.bias").grad_after.norm)
    # ‖Δb‖/‖b‖ across the step between pass 3 and pass 4, from the model's own numbers
    before, after = torch.tensor(biases[3]), torch.tensor(biases[4])
    expected = ((after - before).norm() / before.norm()).item()
    assert dict(bias.update_ratio)[4] == pytest.approx(expected, rel=1e-5)
    assert bias.value_norm[4] == pytest.approx(after.norm().item(), rel=1e-6)
    # 64 elements: no values recorded, but its norm at every pass and its change at every step
    weight = by["layers.0.weight"]
    assert weight.value_norm == pytest.approx([w.norm().item() for w in WEIGHTS], rel=1e-6)
    moved = ((WEIGHTS[4] - WEIGHTS[3]).norm() / WEIGHTS[3].norm()).item()
    assert dict(weight.update_ratio)[4] == pytest.approx(moved, rel=1e-5)
    assert [k for k, _ in weight.update_ratio] == list(range(1, STEPS))


def test_loss_curve_is_the_roots_values(run):
    t, losses, _ = run
    [curve] = loss_series(t.trace)
    assert curve.passes == list(range(STEPS))
    assert curve.values == pytest.approx(losses, rel=0, abs=0)  # the very numbers the loop saw
    html = trace_to_html(t.trace)
    [drawn] = re.findall(r'<svg class="gs-chart" data-series="loss" data-min="([^"]*)" data-max="([^"]*)"', html)
    assert (float(drawn[0]), float(drawn[1])) == (min(losses), max(losses))


def test_report_shows_one_chart_per_parameter_by_module_worst_first_in_chromium(run, tmp_path):
    t, _, _ = run
    report = tmp_path / "report.html"
    report.write_text(trace_to_html(t.trace), encoding="utf-8")
    r = chromium(report, tmp_path / "profile", "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    assert console_errors(r.stderr) == []
    dom = r.stdout
    section = dom[dom.index('<section id="over-time">'):]
    section = section[:section.index("</section>")]
    cards = re.findall(r'<div class="gs-param" data-param="([^"]*)" data-flags="([^"]*)">(.*?</svg>)</div>',
                       section, flags=re.S)
    assert len(cards) == 2 * LAYERS + 3
    assert [(n, f) for n, f, _ in cards[:3]] == [("root", "nan"), ("gate", "vanishing"), ("frozen", "never updated")]
    grad_charts = [len(re.findall(r'<svg class="gs-chart" data-series="grad"', body)) for _, _, body in cards]
    assert grad_charts == [1] * len(cards)  # every parameter's gradient norm, not the first 31
    modules = re.findall(r'<div class="gs-module" data-module="([^"]*)">', section)
    assert modules == ["(top level)"] + [f"layers.{i}" for i in range(LAYERS)]
    bias = next(body for n, _, body in cards if n == "layers.3.bias")
    assert 'data-series="value"' in bias and 'data-series="update"' in bias  # 8 values: recorded
    weight = next(body for n, _, body in cards if n == "layers.3.weight")
    assert 'data-series="value"' in weight and 'data-series="update"' in weight  # 64: norms recorded
    root = next(body for n, _, body in cards if n == "root")
    grad = re.search(r'<svg class="gs-chart" data-series="grad".*?</svg>', root).group(0)
    assert grad.count('class="gs-nonfinite"') == STEPS  # a red tick per NaN pass
    value = re.search(r'<svg class="gs-chart" data-series="value".*?</svg>', root).group(0)
    assert value.count('class="gs-nonfinite"') == STEPS - 1  # root[0] is NaN from the first step on
    assert 'class="gs-plot"' not in dom  # the small per-leaf plots give way


def long_trace(passes: int, leaves: int = 40) -> Trace:
    """`passes` passes of one graph with `leaves` vector parameters (`block.k.weight`), built
    through the model: leaf k's gradient norm at pass i is (k + 1) * (2 + sin(i / 50)), with
    one spike (pass 3,333 of leaf 0: 1e6) and one dip (pass 1,234 of leaf 1: 1e-6)."""
    trace = Trace()
    for i in range(passes):
        nodes = [Node(id="loss", name="loss", kind="op", grad_fn="SumBackward0", is_root=True,
                      value=1.0 / (i + 1))]
        for k in range(leaves):
            norm = (k + 1) * (2 + math.sin(i / 50))
            if (k, i) == (0, 3333):
                norm = 1e6
            if (k, i) == (1, 1234):
                norm = 1e-6
            nodes.append(Node(id=f"p{k}", name=f"block.{k}.weight", kind="leaf", grad_fn="AccumulateGrad",
                              is_parameter=True, shape=[100],
                              grad_after=TensorSummary(shape=[100], dtype="float32", norm=norm)))
        trace.passes.append(Pass(index=i, api="Tensor.backward", graph=Graph(nodes, [])))
    return trace


def test_five_thousand_passes_stay_a_small_page_and_keep_min_and_max():
    trace = long_trace(5000)
    html = trace_to_html(trace)
    size = len(html.encode("utf-8"))
    assert size < 3_000_000, size
    charts = {name: m for name, *m in re.findall(
        r'data-param="([^"]*)"[^>]*><div class="gs-param-head">.*?</div><svg class="gs-chart" data-series="grad" '
        r'data-min="([^"]*)" data-max="([^"]*)"[^>]*>(.*?)</svg>', html, flags=re.S)}
    assert len(charts) == 40
    spiked = charts["block.0.weight"]
    assert float(spiked[1]) == 1e6
    assert float(spiked[0]) == min(2 + math.sin(i / 50) for i in range(5000) if i != 3333)
    # the band reaches the top of the plot at the spike: the max is drawn, not averaged away
    [points] = re.findall(r'<polygon points="([^"]*)"', spiked[2])
    ys = [float(p.split(",")[1]) for p in points.split()]
    assert len(ys) == 2 * BUCKETS
    assert min(ys) == pytest.approx(4.0) and max(ys) == pytest.approx(4.0 + 45.0)
    assert float(charts["block.1.weight"][0]) == 1e-6  # the dip is the chart's true minimum
    assert float(charts["block.1.weight"][1]) == 2 * max(2 + math.sin(i / 50) for i in range(5000))


def test_envelope_keeps_each_buckets_true_min_and_max_and_marks_nonfinite():
    xs = list(range(5000))
    ys: list[float | None] = [math.sin(i) * i for i in xs]
    ys[17], ys[4000] = float("nan"), None
    bands = envelope(xs, ys)
    assert len(bands) == BUCKETS
    finite = [y for y in ys if y is not None and math.isfinite(y)]
    assert min(b.lo for b in bands) == min(finite) and max(b.hi for b in bands) == max(finite)
    assert [b.bad for b in bands].count(True) == 1 and bands[0].bad
    assert sum(1 for x in xs if bands[0].x0 <= x <= bands[0].x1) == 5000 // BUCKETS + 1
    short = envelope([0, 1, 2], [scalar(3.0).norm, 1.0, None])
    assert [(b.x0, b.lo, b.hi) for b in short] == [(0, 3.0, 3.0), (1, 1.0, 1.0)]


def test_a_chart_of_nan_inf_zero_and_missing_values_is_valid_svg_with_finite_coordinates():
    import xml.etree.ElementTree as ET

    from gradscope.render.charts import chart

    ys = [1.0, float("nan"), None, 0.0, float("inf"), 1e-3, 1e3]
    for log in (True, False):
        svg = ET.fromstring(chart("‖w.grad‖ <&>", list(range(len(ys))), ys, kind="grad", log=log))
        coords = [v for el in svg.iter() for k, v in el.attrib.items()
                  if k in ("points", "x", "y", "x1", "y1", "x2", "y2")]
        assert coords and not any(re.search(r"nan|inf", v, flags=re.I) for v in coords)
        assert (svg.get("data-min"), svg.get("data-max")) == ("0.0", "1000.0")
        assert len([el for el in svg.iter() if el.get("class") == "gs-nonfinite"]) == 2
