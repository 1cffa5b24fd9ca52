"""The `gradscope` command, run as a subprocess on real scripts with real torch and Graphviz."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import lesson_trace
from test_render_layout import chain

from gradscope.model import Pass, Trace, load

LESSON = """\
import torch
w = torch.tensor(1.0, requires_grad=True)
x = torch.tensor(2.0, requires_grad=True)
a = x + w
b = w + 1
y = a * b
y.backward()
print("w.grad =", w.grad.item())
"""


def write(folder: Path, name: str, code: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(code))
    return path


def svg_texts(path: Path) -> set[str]:
    return {"".join(t.itertext()) for t in ET.parse(path).getroot().iter("{http://www.w3.org/2000/svg}text")}


def one_line(text: str) -> str:
    """The whole of stderr, asserted to be one line with no traceback."""
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_trace_writes_json_report_and_the_lesson_graph(tmp_path, gradscope_cmd):
    write(tmp_path, "lesson.py", LESSON)
    r = gradscope_cmd("trace", "lesson.py")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "w.grad = 5.0\n"  # the script's own output, untouched
    out = tmp_path / "gradscope-out" / "lesson"
    assert sorted(p.name for p in out.iterdir()) == [".gradscope-files", "pass-000.svg", "report.html", "trace.json"]
    texts = svg_texts(out / "pass-000.svg")
    assert {"w", "x", "a", "b", "y", " = mul", " = add", "w.grad = 2 + 3 = 5", "grad 2", "grad 3", "∂y/∂a = 2",
            "∂y/∂b = 3"} <= texts
    joined = " ".join(texts)
    for line in (4, 5, 6):
        assert f"lesson.py:{line}" in joined
    assert load(out / "trace.json").passes[0].graph.find("w").grad_after.scalar() == 5.0
    assert "gradscope: traced 1 pass (1 distinct graph) of lesson" in r.stderr
    assert "report.html" in r.stderr and "pass-000.svg" in r.stderr


def test_a_training_loop_writes_one_svg_per_distinct_graph(tmp_path, gradscope_cmd):
    write(tmp_path, "loop.py", """\
        import torch
        w = torch.ones(3, requires_grad=True)
        opt = torch.optim.SGD([w], lr=0.1)
        for step in range(30):
            loss = (w * w).sum()
            loss.backward()
            opt.step()
            opt.zero_grad()
        """)
    r = gradscope_cmd("trace", "-o", "out", "loop.py")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".gradscope-files", "pass-000.svg", "report.html", "trace.json"]
    assert len(load(tmp_path / "out" / "trace.json").passes) == 30
    assert "used by passes 0–29 (30 passes)" in (tmp_path / "out" / "report.html").read_text()


def test_arguments_after_the_script_are_the_scripts(tmp_path, gradscope_cmd):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "helper.py", "VALUE = 42\n")
    write(tmp_path / "sub", "args.py", """\
        import json, sys
        import helper  # found because sys.path[0] is the script's folder
        if __name__ == "__main__":
            print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "value": helper.VALUE}))
        """)
    r = gradscope_cmd("trace", "-o", "out", "sub/args.py", "-o", "x", "--strict", "pos")
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen == {"argv": ["sub/args.py", "-o", "x", "--strict", "pos"], "path0": str(tmp_path / "sub"), "value": 42}
    assert (tmp_path / "out" / "trace.json").exists() and not (tmp_path / "x").exists()


def test_module_runs_like_python_dash_m(tmp_path, gradscope_cmd):
    (tmp_path / "pkg").mkdir()
    write(tmp_path / "pkg", "__init__.py", "")
    write(tmp_path / "pkg", "main.py", """\
        import sys
        print(__name__, sys.argv[1:])
        sys.exit(7)
        """)
    r = gradscope_cmd("trace", "-m", "pkg.main", "a", "--b")
    assert (r.returncode, r.stdout) == (7, "__main__ ['a', '--b']\n")
    assert (tmp_path / "gradscope-out" / "pkg.main" / "trace.json").exists()
    r = gradscope_cmd("trace", "-m", "no_such_module")
    assert r.returncode == 2 and "No module named no_such_module" in one_line(r.stderr)


def test_a_raising_script_keeps_its_trace_and_pythons_traceback(tmp_path, gradscope_cmd):
    write(tmp_path, "fails.py", """\
        import torch
        w = torch.tensor(3.0, requires_grad=True)
        y = w * w
        y.backward()
        def broken():
            raise ValueError("boom")
        broken()
        """)
    r = gradscope_cmd("trace", "fails.py")
    assert r.returncode == 1
    tb = r.stderr.split("gradscope: traced")[0]
    assert tb == (f'Traceback (most recent call last):\n  File "{tmp_path / "fails.py"}", line 7, in <module>\n'
                  f'    broken()\n  File "{tmp_path / "fails.py"}", line 6, in broken\n'
                  f'    raise ValueError("boom")\nValueError: boom\n')
    assert len(load(tmp_path / "gradscope-out" / "fails" / "trace.json").passes) == 1
    assert (tmp_path / "gradscope-out" / "fails" / "pass-000.svg").exists()


def test_an_autograd_error_exits_1_with_the_passes_before_it(tmp_path, gradscope_cmd):
    write(tmp_path, "twice.py", """\
        import torch
        w = torch.tensor(3.0, requires_grad=True)
        y = w.exp() * 2
        y.backward()
        y.backward()  # the graph was freed: RuntimeError
        """)
    r = gradscope_cmd("trace", "twice.py")
    assert r.returncode == 1
    assert "line 5, in <module>" in r.stderr and "RuntimeError: Trying to backward through the graph" in r.stderr
    assert "gradscope/" not in r.stderr.split("gradscope: traced")[0]  # no frames of ours
    assert len(load(tmp_path / "gradscope-out" / "twice" / "trace.json").passes) >= 1


@pytest.mark.parametrize("code, exit_code, tail", [
    ("import sys\nsys.exit(4)\n", 4, ""),
    ("import sys\nsys.exit()\n", 0, ""),
    ("import sys\nsys.exit('bad config')\n", 1, "bad config\n"),
    ("raise KeyboardInterrupt\n", 130, "KeyboardInterrupt\n"),
])
def test_exit_codes_are_pythons(tmp_path, gradscope_cmd, code, exit_code, tail):
    write(tmp_path, "s.py", code)
    r = gradscope_cmd("trace", "s.py")
    assert r.returncode == exit_code
    assert r.stderr.split("gradscope: traced")[0].endswith(tail)
    assert (tmp_path / "gradscope-out" / "s" / "trace.json").exists()


def test_bad_input_is_one_line_and_exit_2(tmp_path, gradscope_cmd):
    r = gradscope_cmd("trace", "missing.py")
    assert r.returncode == 2 and one_line(r.stderr) == "gradscope: can't open file 'missing.py': No such file or directory"
    (tmp_path / "folder").mkdir()
    r = gradscope_cmd("trace", "folder")
    assert r.returncode == 2 and "can't find '__main__' module in 'folder'" in one_line(r.stderr)
    write(tmp_path, "ok.py", "print('ran')\n")
    (tmp_path / "file").write_text("")
    r = gradscope_cmd("trace", "-o", "file/sub", "ok.py")
    assert r.returncode == 2 and "cannot write to output folder" in one_line(r.stderr)
    assert r.stdout == ""  # refused before running the script
    r = gradscope_cmd("demo", "no_such_demo")
    assert r.returncode == 2 and "no showcase named 'no_such_demo'" in one_line(r.stderr)


def test_syntax_error_is_shown_as_python_shows_it(tmp_path, gradscope_cmd):
    write(tmp_path, "bad.py", "x = 1\ny = (x +\n")
    r = gradscope_cmd("trace", "bad.py")
    assert r.returncode == 1
    assert r.stderr == f'  File "{tmp_path / "bad.py"}", line 2\n    y = (x +\n        ^\nSyntaxError: \'(\' was never closed\n'


def test_render_rejects_files_that_are_not_traces(tmp_path, gradscope_cmd):
    (tmp_path / "notjson.json").write_text("{oops")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    r = gradscope_cmd("render", "notjson.json")
    assert r.returncode == 2 and "not a gradscope trace (invalid JSON" in one_line(r.stderr)
    assert "line 1" in r.stderr
    r = gradscope_cmd("render", "other.json")
    assert r.returncode == 2 and "not a gradscope trace" in one_line(r.stderr)
    r = gradscope_cmd("render", "absent.json")
    assert r.returncode == 2 and "no such file" in one_line(r.stderr)


def test_render_a_saved_trace_to_a_file_or_a_folder(tmp_path, gradscope_cmd):
    lesson_trace(passes=3).save(tmp_path / "trace.json")
    r = gradscope_cmd("render", "trace.json", "-o", "p1.png", "--pass", "1")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p1.png").read_bytes()[:4] == b"\x89PNG"
    r = gradscope_cmd("render", "trace.json", "-o", "again")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == [".gradscope-files", "pass-000.svg", "report.html"]
    assert {"w", "w.grad = 2 + 3 = 5", "grad 3"} <= svg_texts(tmp_path / "again" / "pass-000.svg")
    r = gradscope_cmd("render", "trace.json", "-o", "g.svg", "--pass", "9")
    assert r.returncode == 2 and "no pass 9" in one_line(r.stderr)
    r = gradscope_cmd("render", "trace.json", "-o", "g.pdf")
    assert r.returncode == 2 and "use one of .svg, .png, .dot, .html" in one_line(r.stderr)


def test_a_graph_too_big_for_the_timeout_still_writes_dot_json_and_report(tmp_path, gradscope_cmd):
    Trace(passes=[Pass(index=0, api="Tensor.backward", graph=chain(3000))]).save(tmp_path / "trace.json")
    r = gradscope_cmd("render", "trace.json", "--timeout", "0.2")
    assert r.returncode == 2
    message = [line for line in r.stderr.splitlines() if "did not finish" in line]
    assert len(message) == 1 and "Traceback" not in r.stderr
    assert "--timeout SECONDS" in message[0] and "pass-000.dot" in message[0]
    assert (tmp_path / "pass-000.dot").read_text().count("MulBackward0") == 3000
    assert "did not finish in 0.2 s" in (tmp_path / "report.html").read_text()
    assert not (tmp_path / "pass-000.svg").exists()


def test_demo_lists_and_traces_the_showcases(tmp_path, gradscope_cmd):
    r = gradscope_cmd("demo")
    assert r.returncode == 0
    listed = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert "backward" in listed and "__init__" not in listed
    assert "y = (x + w) * (w + 1)" in listed["backward"]  # the docstring's first line
    r = gradscope_cmd("demo", "backward")
    assert r.returncode == 0, r.stderr
    svg = tmp_path / "gradscope-out" / "backward" / "pass-000.svg"
    assert {"w", "x", "a", "b", "y", "w.grad = 2 + 3 = 5", "grad 2", "grad 3"} <= svg_texts(svg)


def test_version_and_help(tmp_path, gradscope_cmd):
    import gradscope

    r = gradscope_cmd("--version")
    assert (r.returncode, r.stdout) == (0, f"gradscope {gradscope.__version__}\n")
    r = gradscope_cmd("--help")
    assert r.returncode == 0 and "gradscope trace train.py" in r.stdout and "gradscope demo backward" in r.stdout
    r = gradscope_cmd("trace", "--help")
    assert r.returncode == 0 and "--timeout" in r.stdout and "--strict" in r.stdout and "--ignore" in r.stdout
