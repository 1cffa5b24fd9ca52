"""Long runs: `trace(keep=)` / `--max-passes` bound what is kept; `gradscope stats`
prints per-parameter gradient norms over the passes."""

from __future__ import annotations

import json
import math
import re
import textwrap

import pytest
import torch

import gradscope
from conftest import run_gradscope
from gradscope.render.stats import parameter_stats


def run(steps: int, nan_at: int | None = None, **options) -> gradscope.trace:
    w = torch.ones(3, requires_grad=True)
    with gradscope.trace(**options) as t:
        for step in range(steps):
            scale = float("nan") if step == nan_at else 1.0
            (w * scale).sum().backward()
            w.grad = None
    return t


def test_keep_bounds_the_passes_and_states_the_sampling():
    t = run(20, keep=10)  # (up to 2 × keep passes are held while running: thinned at the end)
    assert [p.index for p in t.passes] == [0, 1, 2, 5, 8, 11, 14, 17, 18, 19]
    assert t.trace.meta["sampling"] == ("kept 10 of 20 passes (keep=10): the first 2, every 3rd in between, "
                                        "the last 2")
    t = run(40, keep=10)  # thinned while running (every 2nd, 4th, ...), then at the end
    assert [p.index for p in t.passes] == [0, 1, 2, 10, 18, 26, 34, 38, 39]
    assert t.trace.meta["sampling"] == ("kept 9 of 40 passes (keep=10): the first 2, every 8th in between, "
                                        "the last 2")


def test_keep_bounds_the_passes_held_while_the_run_goes():
    w = torch.ones(3, requires_grad=True)
    held = []
    with gradscope.trace(keep=20) as t:
        for step in range(3000):
            (w * (float("nan") if step == 1234 else 1.0)).sum().backward()
            w.grad = None
            held.append(len(t.trace.passes))
    assert max(held) <= 2 * 20 + 1 and held[-1] < 45  # never more than about 2 × keep
    indices = [p.index for p in t.passes]
    assert indices[:5] == [0, 1, 2, 3, 4] and indices[-5:] == [2995, 2996, 2997, 2998, 2999]
    assert 1234 in indices and len(t.passes) <= 21  # the NaN pass stands out: kept
    assert t.trace.meta["sampling"].startswith("kept ")
    assert " of 3,000 passes (keep=20): the first 5, every " in t.trace.meta["sampling"]
    # (a diagnostic points at it when the pass was recorded in full: full_passes.py decides)
    assert re.search(r"the last 5, 1 more (that diagnostics point at|with a diagnostic, an error, NaN/Inf or an "
                     r"event)$", t.trace.meta["sampling"])


def test_keep_keeps_the_passes_diagnostics_point_at():
    t = run(20, nan_at=7, keep=10)
    (d,) = [d for d in t.diagnostics if d.code == "nonfinite-gradient"]
    assert d.pass_index == 7 and 7 in [p.index for p in t.passes] and len(t.passes) == 11
    assert t.trace.meta["sampling"].endswith("1 more that diagnostics point at")
    t = run(40, nan_at=17, keep=10)  # (thinned while running too: the NaN pass stands out)
    assert [p.index for p in t.passes] == [0, 1, 2, 10, 17, 18, 26, 34, 38, 39]
    assert t.trace.meta["sampling"].endswith("1 more that diagnostics point at")


def test_a_short_run_keeps_everything():
    t = run(5, keep=10)
    assert len(t.passes) == 5 and "sampling" not in t.trace.meta


def test_keep_must_be_positive():
    with pytest.raises(ValueError, match="keep must be a positive number"):
        gradscope.trace(keep=0)


def test_max_passes_from_the_command_line(tmp_path):
    (tmp_path / "loop.py").write_text(textwrap.dedent("""\
        import torch
        w = torch.ones(3, requires_grad=True)
        for step in range(30):
            (w * 2).sum().backward()
            w.grad = None
    """))
    r = run_gradscope("trace", "--max-passes", "6", "-o", "out", "loop.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    saved = gradscope.load(tmp_path / "out" / "trace.json")
    assert [p.index for p in saved.passes] == [0, 1, 9, 17, 25, 29]
    assert "kept 6 of 30 passes (keep=6)" in (tmp_path / "out" / "report.html").read_text()


STATS = """\
    import torch
    fine = torch.ones(3, requires_grad=True)
    tiny = torch.ones(2, requires_grad=True)
    unused = torch.ones(1, requires_grad=True)
    broken = torch.zeros(1, requires_grad=True)
    for step in range(3):
        loss = (fine * 2).sum() + (tiny * 1e-9).sum() + (unused * 0).sum() + broken.log().sum()
        loss.backward()
        for t in (fine, tiny, unused, broken):
            t.grad = None
"""


def test_stats_lists_parameters_worst_first(tmp_path):
    (tmp_path / "model.py").write_text(textwrap.dedent(STATS))
    r = run_gradscope("trace", "-o", "out", "model.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    table = run_gradscope("stats", "out/trace.json", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["parameter", "shape"]
    assert [line.split()[0] for line in lines[2:]] == ["broken", "unused", "tiny", "fine"]
    assert [line.split()[-1] for line in lines[2:]] == ["non-finite", "gradient", "vanishing", "ok"]
    rows = json.loads(run_gradscope("stats", "--json", "out/trace.json", cwd=tmp_path).stdout)
    fine = rows[-1]
    assert fine["name"] == "fine" and fine["passes"] == fine["with_grad"] == 3 and fine["shape"] == [3]
    assert fine["first"] == fine["last"] == pytest.approx(2 * math.sqrt(3))
    assert rows[0]["name"] == "broken" and rows[0]["nonfinite"] == 3


def test_stats_of_a_bad_file_is_one_line(tmp_path):
    (tmp_path / "trace.json").write_text("{}")
    r = run_gradscope("stats", "trace.json", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a gradscope trace" in r.stderr


def test_parameter_stats_of_a_hundred_parameters():
    model = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(50)])
    with gradscope.trace() as t:
        for _ in range(2):
            model(torch.ones(1, 2)).sum().backward()
    rows = parameter_stats(t.trace)
    assert len(rows) == 100 and {r.passes for r in rows} == {2}
