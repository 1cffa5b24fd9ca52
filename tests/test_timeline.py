"""Gradients over time in the report: every parameter charted, worst first, grouped by
module, long runs downsampled with min/max envelopes (render/timeline.py)."""

from __future__ import annotations

import math
import re

from gradscope.model import Graph, Node, Pass, TensorSummary, Trace
from gradscope.render.timeline import buckets, gradient_timeline
from test_report_browser import chromium, console_errors

LAYERS, PASSES = 40, 600


def long_run() -> Trace:
    """40 layers × (weight, bias) over 600 passes; layer 7's weight goes NaN at pass 300,
    layer 3's bias never gets a gradient, and layer 0's weight spikes once at pass 123."""
    trace = Trace()
    for i in range(PASSES):
        nodes = [Node(id="loss", kind="op", name="loss", grad_fn="SumBackward0", is_root=True, shape=[],
                      dtype="float32", value=1.0 / (i + 1))]
        for layer in range(LAYERS):
            for part in ("weight", "bias"):
                norm = 0.01 * (layer + 1) * (1 + math.sin(i / 50))
                if (layer, part) == (7, "weight") and i >= 300:
                    norm = float("nan")
                if (layer, part) == (0, "weight") and i == 123:
                    norm = 1e6
                grad = None if (layer, part) == (3, "bias") else TensorSummary(
                    shape=[4], dtype="float32", norm=norm, nan=int(math.isnan(norm)))
                nodes.append(Node(id=f"l{layer}{part}", kind="leaf", name=f"blocks.{layer}.{part}",
                                  grad_fn="AccumulateGrad", shape=[4], dtype="float32", is_parameter=True,
                                  grad_after=grad))
        trace.passes.append(Pass(index=i, api="Tensor.backward", graph=Graph(nodes, []), step=i))
    return trace


def test_buckets_keep_a_spike_and_mark_non_finite_columns():
    points = [(i, 1.0) for i in range(1000)]
    points[500] = (500, 1000.0)
    points[900] = (900, float("inf"))
    cols = buckets(points)
    assert len(cols) == 112  # 1000 passes in columns of 9
    assert max(hi for _, hi, _, _ in cols) == 1000.0 and min(lo for lo, _, _, _ in cols) == 1.0
    assert [k for k, c in enumerate(cols) if c[3]] == [900 // 9]


def test_every_parameter_is_charted_worst_first():
    html = gradient_timeline(long_run())
    titles = re.findall(r"<svg class=\"gs-plot\" data-kind=\"timeline\"[^>]*><title>([^<]*)</title>", html)
    assert len(titles) == 2 * LAYERS
    # by module, a module where its worst parameter falls: non-finite, no gradient, exploding
    assert [t.split(" · ")[:2] for t in titles[:6]] == [
        ["blocks.7.weight", "non-finite"], ["blocks.7.bias", "ok"], ["blocks.3.bias", "no gradient"],
        ["blocks.3.weight", "ok"], ["blocks.0.weight", "exploding"], ["blocks.0.bias", "ok"]]
    assert html.count("<details") == LAYERS and "<code>blocks.7</code> (2 parameters · 1 to look at)" in html
    assert len(html) < 2_000_000


def test_the_report_shows_more_than_31_parameters_in_chromium(tmp_path):
    from gradscope.render import render

    report = render(long_run(), tmp_path / "report.html")
    r = chromium(report, tmp_path / "profile", "--dump-dom")
    assert r.returncode == 0 and console_errors(r.stderr) == []
    assert r.stdout.count('data-kind="timeline"') == 2 * LAYERS
    assert "Gradient norms over 600 passes, every parameter" in r.stdout


def test_a_short_run_with_few_parameters_has_only_the_first_charts():
    trace = long_run()
    trace.passes = trace.passes[:50]
    for p in trace.passes:
        p.graph.nodes = p.graph.nodes[:11]  # the loss and five layers
    assert gradient_timeline(trace) == ""
    trace.passes = long_run().passes[:50]  # 80 parameters: charted
    assert gradient_timeline(trace).count('data-kind="timeline"') == 80
