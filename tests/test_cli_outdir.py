"""The output folder: gradscope removes only what it wrote there (its manifest says
what), an empty -o is refused, and a script that removes the folder keeps its trace."""

from __future__ import annotations

import json

from test_cli import write

from gradscope.model import load

TWO_GRAPHS = """\
import sys, torch
w = torch.ones(2, requires_grad=True)
(w * 3).sum().backward()
if sys.argv[1:] == ["two"]:
    (w * w).sum().backward()
"""


def test_only_files_gradscope_wrote_are_removed(tmp_path, gradscope_cmd):
    write(tmp_path, "s.py", TWO_GRAPHS)
    out = tmp_path / "out"
    assert gradscope_cmd("trace", "-o", "out", "s.py", "two").returncode == 0
    assert {"pass-000.svg", "pass-001.svg"} <= {p.name for p in out.iterdir()}
    (out / "pass-042.svg").write_text("<svg>the user's own</svg>")
    (out / "pass-007.dot").write_text("digraph mine {}")
    r = gradscope_cmd("trace", "-o", "out", "s.py")  # one graph now: pass-001.svg is stale
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        ".gradscope-files", "pass-000.svg", "pass-007.dot", "pass-042.svg", "report.html", "trace.json"]
    assert (out / "pass-042.svg").read_text() == "<svg>the user's own</svg>"
    listed = json.loads((out / ".gradscope-files").read_text())["files"]
    assert sorted(listed) == ["pass-000.svg", "report.html", "trace.json"]


def test_an_empty_output_folder_is_refused(tmp_path, gradscope_cmd):
    write(tmp_path, "s.py", TWO_GRAPHS)
    r = gradscope_cmd("trace", "-o", "", "s.py")
    assert r.returncode == 2
    assert "empty path" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.py"]  # nothing written here


def test_a_script_that_removes_the_output_folder_keeps_its_trace(tmp_path, gradscope_cmd):
    write(tmp_path, "s.py", """\
        import os, shutil, torch
        w = torch.ones(2, requires_grad=True)
        (w * 3).sum().backward()
        shutil.rmtree(os.environ["GRADSCOPE_OUT"])
        print("removed", os.path.exists(os.environ["GRADSCOPE_OUT"]))
        """)
    r = gradscope_cmd("trace", "-o", "out", "s.py")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "removed False\n"
    assert load(tmp_path / "out" / "trace.json").passes[0].graph.leaves[0].grad_after.value == [3.0, 3.0]
    assert (tmp_path / "out" / "report.html").exists() and (tmp_path / "out" / "pass-000.svg").exists()
