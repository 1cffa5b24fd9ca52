"""The command's options and what it says when given bad ones: gradscope's options after a
demo's name, usage errors in one line (exit 2, before the script runs), tracebacks as
python prints them, `render` of a trace whose only graph is an error's."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from test_cli import svg_texts, write

import gradscope


def plain_python(script: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script.name], cwd=script.parent, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def script_stderr(stderr: str) -> str:
    """What the traced script wrote to stderr: everything before gradscope's summary."""
    return stderr.split("gradscope: traced")[0]


def test_demo_takes_gradscopes_options_after_its_name(tmp_path, gradscope_cmd):
    r = gradscope_cmd("demo", "backward", "-o", "out", "--timeout", "30", "--ignore", "leaf-inplace")
    assert r.returncode == 0, r.stderr
    assert {"w", "w.grad = 2 + 3 = 5", "grad 2", "grad 3"} <= svg_texts(tmp_path / "out" / "pass-000.svg")
    assert not (tmp_path / "gradscope-out").exists()
    # the demo's own options still reach it, wherever gradscope's are
    r = gradscope_cmd("demo", "logistic_regression", "--max-iterations", "3", "--output=lr", "--strict")
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "lr" / "trace.json").read_text())
    assert len(saved["passes"]) == 3 and saved["meta"]["argv"] == ["--max-iterations", "3"]


# Scripts that fail inside torch functions written in Python, which dispatch to a
# function mode (gradscope's, under tracing) before doing their work.
FAILING = {
    "backward_twice": "import torch\nx = torch.ones(2, requires_grad=True)\ny = (x * 3).sum()\n"
                      "y.backward()\ny.backward()\n",
    "softmax_dim": "import torch\nimport torch.nn.functional as F\n\n\ndef probs(t):\n"
                   "    return F.softmax(t, dim=5)\n\n\nprobs(torch.ones(2, 3, requires_grad=True))\n",
    "grad_twice": "import torch\nx = torch.ones(3, requires_grad=True)\ny = (x * 2).sum()\n"
                  "torch.autograd.grad(y, x)\ntorch.autograd.grad(y, x)\n",
    "chained": "import torch\nx = torch.ones(3, requires_grad=True)\ntry:\n    x.norm(p='fro', dim=(0, 1, 2))\n"
               "except RuntimeError as e:\n    raise ValueError('bad norm') from e\n",
}


@pytest.mark.parametrize("name", sorted(FAILING))
def test_a_failing_scripts_traceback_is_the_one_python_prints(tmp_path, gradscope_cmd, name):
    script = write(tmp_path, f"{name}.py", FAILING[name])
    expected = plain_python(script)
    assert expected.returncode == 1 and "Traceback" in expected.stderr
    r = gradscope_cmd("trace", script.name)
    assert r.returncode == 1
    assert script_stderr(r.stderr) == expected.stderr  # no gradscope or handle_torch_function frames


USER_MODE = """\
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


class Refuse(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.softmax:
            raise RuntimeError("no softmax here")
        return func(*args, **(kwargs or {}))


with Refuse():
    F.softmax(torch.ones(2, requires_grad=True), dim=0)
"""


def test_a_dispatch_into_the_users_own_mode_stays_in_the_traceback(tmp_path, gradscope_cmd):
    script = write(tmp_path, "mode.py", USER_MODE)
    expected = plain_python(script)
    assert "handle_torch_function" in expected.stderr and "no softmax here" in expected.stderr
    r = gradscope_cmd("trace", script.name)
    assert r.returncode == 1 and script_stderr(r.stderr) == expected.stderr


def test_render_draws_the_graph_of_a_trace_with_only_an_errors_graph(tmp_path, gradscope_cmd):
    r = gradscope_cmd("demo", "leaf_inplace", "-o", "out")
    assert r.returncode == 1
    assert json.loads((tmp_path / "out" / "trace.json").read_text())["passes"] == []
    report = (tmp_path / "out" / "report.html").read_text()  # its diagnostic links to that graph
    assert '<a href="#event-0">the graph when it was raised</a>' in report and '<h3 id="event-0">' in report
    r = gradscope_cmd("render", "out/trace.json", "-o", "x.png")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = gradscope_cmd("render", "out/trace.json", "-o", "x.svg")
    texts = svg_texts(tmp_path / "x.svg")
    assert {"w", "x", "a", "b", "y"} <= texts
    assert "the graph as it stood at leaf_inplace.py:23, when PyTorch raised" in texts
    assert "RuntimeError: a leaf Variable that requires grad is being used in an in-place operation." in texts


USAGE_ERRORS = [
    (["trace", "--bogus", "ran.py"], "gradscope trace: No such option '--bogus'; see 'gradscope trace --help'"),
    (["trace", "--outptu", "x", "ran.py"],
     "gradscope trace: No such option '--outptu'. Did you mean '--output'?; see 'gradscope trace --help'"),
    *[(["trace", "--timeout", value, "ran.py"], f"gradscope trace: Invalid value for '--timeout': {why}; "
       "see 'gradscope trace --help'")
      for value, why in [("nan", "nan is not between 0.1 and 86400 seconds"),
                         ("inf", "inf is not between 0.1 and 86400 seconds"),
                         ("1e300", "1e300 is not between 0.1 and 86400 seconds"),
                         ("soon", "'soon' is not a number of seconds")]],
    (["trace", "--ignore", "grad-acumulation", "ran.py"],
     "gradscope trace: Invalid value for '--ignore': no diagnostic has the code 'grad-acumulation'; the codes are "
     "leaf-inplace, saved-tensor-modified, grad-accumulation, backward-twice, nonleaf-grad, no-gradient, "
     "nonfinite-gradient, nonscalar-backward, ddp-gradients-differ; see 'gradscope trace --help'"),
    (["trace", "--layout-budget", "nan", "ran.py"],
     "gradscope trace: Invalid value for '--layout-budget': nan is not between 0.1 and 86400 seconds; "
     "see 'gradscope trace --help'"),
    (["trace"], "gradscope trace: Missing argument 'SCRIPT'; see 'gradscope trace --help'"),
    (["trace", "-o"], "gradscope trace: Option '-o' requires an argument; see 'gradscope trace --help'"),
    (["demo", "--bogus", "backward"], "gradscope demo: No such option '--bogus'; see 'gradscope demo --help'"),
    (["demo", "backward", "--timeout", "-1"],
     "gradscope demo: Invalid value for '--timeout': -1 is not between 0.1 and 86400 seconds; "
     "see 'gradscope demo --help'"),
    (["render", "t.json", "--timeout", "inf"],
     "gradscope render: Invalid value for '--timeout': inf is not between 0.1 and 86400 seconds; "
     "see 'gradscope render --help'"),
    (["render", "t.json", "--pass", "last"],
     "gradscope render: Invalid value for '--pass': 'last' is not a valid integer; see 'gradscope render --help'"),
    (["--bogus"], "gradscope: No such option '--bogus'; see 'gradscope --help'"),
    (["draw"], "gradscope: No such command 'draw'; see 'gradscope --help'"),
]


@pytest.mark.parametrize("args,line", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_every_usage_error_is_one_line_and_exit_2_before_anything_runs(tmp_path, gradscope_cmd, args, line):
    write(tmp_path, "ran.py", "print('the script ran')\n")
    r = gradscope_cmd(*args)
    assert (r.returncode, r.stderr, r.stdout) == (2, line + "\n", "")
    assert not (tmp_path / "gradscope-out").exists()


def test_a_bad_save_path_never_replaces_the_blocks_own_exception(tmp_path):
    bad = tmp_path / "missing" / "folder" / "trace.json"
    with pytest.warns(RuntimeWarning, match="could not save the trace to .*missing"):
        with pytest.raises(KeyError, match="the block's own") as raised:
            with gradscope.trace(save=bad):
                raise KeyError("the block's own")
    if sys.version_info >= (3, 11):
        assert raised.value.__notes__ == [f"gradscope: could not save the trace to {bad}: "
                                          f"[Errno 2] No such file or directory: '{bad}'"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a block that ends normally gets the save's own error
        with pytest.raises(FileNotFoundError):
            with gradscope.trace(save=bad):
                pass
