"""`gradscope trace` runs what `python` runs, as python runs it: -m from the installed
command, packages, folders and zips with __main__.py, the script's globals, its own
excepthook, its replaced or closed stdout/stderr, and a child it forks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT
from test_cli import write

from gradscope.model import load

INSTALLED = Path(sys.executable).parent / "gradscope"

# What the running code sees of its world: printed as JSON, compared with python's.
PROBE = """\
import json, sys
seen = {name: repr(globals().get(name, "MISSING")) for name in ("__name__", "__package__", "__cached__", "__doc__")}
seen.update(argv=sys.argv, path0=sys.path[0], file=__file__, spec=__spec__ and __spec__.name,
            loader=type(__loader__).__name__, builtins=type(__builtins__).__name__,
            names=sorted(globals()))
print(json.dumps(seen))
"""


def python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def installed(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The `gradscope` console script, as a user runs it (sys.path[0] is its own folder)."""
    if not INSTALLED.exists():
        pytest.skip("the gradscope command is not installed next to this python (pip install -e .)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([str(INSTALLED), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def test_modules_packages_folders_and_zips_run_as_python_runs_them(tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    write(tmp_path / "mypkg", "train.py", PROBE)
    write(tmp_path / "mypkg", "__main__.py", PROBE)
    (tmp_path / "app").mkdir()
    write(tmp_path / "app", "__main__.py", PROBE)
    with zipfile.ZipFile(tmp_path / "app.zip", "w") as z:
        z.writestr("__main__.py", PROBE)
    for how in (["-m", "mypkg.train"], ["-m", "mypkg"], ["app"], ["app.zip"]):
        expected = python(*how, "--lr", "0.1", cwd=tmp_path)
        assert expected.returncode == 0, expected.stderr
        r = installed("trace", "-o", "out", *how, "--lr", "0.1", cwd=tmp_path)
        assert r.returncode == 0, (how, r.stderr)
        assert json.loads(r.stdout) == json.loads(expected.stdout), how
        assert load(tmp_path / "out" / "trace.json").meta["argv"] == ["--lr", "0.1"]


def test_a_scripts_globals_are_pythons(tmp_path, gradscope_cmd):
    write(tmp_path, "probe.py", PROBE)
    expected = json.loads(python("probe.py", cwd=tmp_path).stdout)
    r = gradscope_cmd("trace", "probe.py")
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen == expected
    assert (seen["builtins"], seen["loader"], seen["__cached__"]) == ("module", "SourceFileLoader", "None")


def test_the_scripts_own_excepthook_shows_its_error(tmp_path, gradscope_cmd):
    write(tmp_path, "hooked.py", """\
        import sys, torch
        def hook(kind, value, tb):
            print("hook:", kind.__name__, value, tb.tb_frame.f_code.co_filename == __file__, tb.tb_lineno,
                  file=sys.stderr)
        sys.excepthook = hook
        (torch.ones(2, requires_grad=True) * 3).sum().backward()
        raise ValueError("boom")
        """)
    expected = python("hooked.py", cwd=tmp_path)
    assert (expected.returncode, expected.stderr) == (1, "hook: ValueError boom True 7\n")
    r = gradscope_cmd("trace", "hooked.py")
    assert r.returncode == 1
    assert r.stderr.startswith("hook: ValueError boom True 7\n") and "Traceback" not in r.stderr
    assert "gradscope: traced 1 pass" in r.stderr


@pytest.mark.parametrize("code", [
    "sys.stdout.close()",
    "sys.stderr.close(); raise ValueError('no stderr')",
    "sys.stdout = io.StringIO(); sys.stderr = io.StringIO(); raise SystemExit(4)",
    "sys.stderr = None; raise ValueError('none')",
    "sys.stdout.close(); sys.exit(5)",
])
def test_a_script_that_replaces_or_closes_its_streams_keeps_pythons_exit_code(tmp_path, gradscope_cmd, code):
    write(tmp_path, "streams.py", f"import io, sys, torch\n"
                                  f"(torch.ones(2, requires_grad=True) * 3).sum().backward()\n{code}\n")
    expected = python("streams.py", cwd=tmp_path)
    r = gradscope_cmd("trace", "-o", "out", "streams.py")
    assert r.returncode == expected.returncode, r.stderr
    assert "Traceback" not in r.stderr and "gradscope: traced 1 pass" in r.stderr
    saved = load(tmp_path / "out" / "trace.json")
    assert saved.meta["exit_code"] == expected.returncode and len(saved.passes) == 1


def test_a_forked_child_that_returns_does_not_write_the_outputs_again(tmp_path, gradscope_cmd):
    write(tmp_path, "forks.py", """\
        import os, sys, torch
        (torch.ones(2, requires_grad=True) * 3).sum().backward()
        pid = os.fork()
        if pid == 0:
            print("child ends its script", flush=True)
            sys.exit(7)
        _, status = os.waitpid(pid, 0)
        print("child exit code", os.waitstatus_to_exitcode(status), flush=True)
        import signal, time
        pid = os.fork()
        if pid == 0:  # a pool worker, say, that its parent terminates: it dies of SIGTERM
            time.sleep(60)
            os._exit(0)
        time.sleep(1)
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        print("terminated child", os.waitstatus_to_exitcode(status), flush=True)
        """)
    r = gradscope_cmd("trace", "-o", "out", "forks.py")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "child ends its script\nchild exit code 7\nterminated child -15\n"
    assert r.stderr.count("gradscope: traced") == 1
    assert load(tmp_path / "out" / "trace.json").meta["exit_code"] == 0
