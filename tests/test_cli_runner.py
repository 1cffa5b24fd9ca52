"""The runner in this process: the script's world is set up like `python SCRIPT` and put
back afterwards; and the --strict / --ignore hooks of the command."""

from __future__ import annotations

import gc
import json
import sys
import textwrap

import pytest

import gradscope.diagnostics
from gradscope import cli, runner
from gradscope.model import Diagnostic, Source, load
from conftest import run_gradscope


def test_script_world_is_pythons_and_is_restored(tmp_path):
    script = tmp_path / "pickles.py"
    script.write_text(textwrap.dedent("""\
        import json, pickle, sys
        class Point:
            def __init__(self, x):
                self.x = x
        if __name__ == "__main__":
            point = pickle.loads(pickle.dumps(Point(3)))  # pickle finds Point in sys.modules["__main__"]
            seen = {"x": point.x, "argv": sys.argv, "path0": sys.path[0], "file": __file__}
            open(sys.argv[1], "w").write(json.dumps(seen))
        """))
    before = sys.argv[:], sys.path[:], sys.modules["__main__"]
    report = tmp_path / "seen.json"
    outcome = runner.run(runner.script_target(script, [str(report)]))
    assert outcome == runner.Outcome(0)
    assert json.loads(report.read_text()) == {"x": 3, "argv": [str(script), str(report)],
                                              "path0": str(tmp_path), "file": str(script)}
    assert (sys.argv, sys.path, sys.modules["__main__"]) == before


def test_exceptions_become_exit_codes_and_restore_state(tmp_path):
    before = sys.argv[:], sys.path[:], sys.modules["__main__"]
    script = tmp_path / "s.py"
    for code, expected, last_line in [
        ("raise RuntimeError('x')", 1, "RuntimeError: x"),
        ("raise SystemExit(9)", 9, None),
        ("raise KeyboardInterrupt", 130, "KeyboardInterrupt"),
        ("raise ValueError('a') from KeyError('b')", 1, "ValueError: a"),
    ]:
        script.write_text(code + "\n")
        outcome = runner.run(runner.script_target(script, []))
        assert outcome.exit_code == expected
        if last_line:
            assert outcome.traceback.splitlines()[-1] == last_line
            assert "runner.py" not in outcome.traceback and "runpy" not in outcome.traceback
        assert (sys.argv, sys.path, sys.modules["__main__"]) == before


def test_strict_and_ignore(tmp_path, monkeypatch, capsys):
    """`diagnose` is replaced by one that finds two (codes --ignore knows)."""
    found = [
        Diagnostic(code="grad-accumulation", severity="warning", title="gradients pile up", message="",
                   sources=[Source(str(tmp_path / "s.py"), 4, "y.backward()")], pass_index=0),
        Diagnostic(code="no-gradient", severity="info", title="fyi", message=""),
    ]
    monkeypatch.setattr(gradscope.diagnostics, "diagnose", lambda trace: list(found))
    script = tmp_path / "s.py"
    script.write_text("import torch\nw = torch.ones(2, requires_grad=True)\ny = (w * 3).sum()\ny.backward()\n")

    def run(*args: str) -> int:
        with pytest.raises(SystemExit) as info:
            cli.main(["trace", "-o", str(tmp_path / "out"), *args, str(script)])
        return info.value.code

    assert run() == 0
    assert "warning grad-accumulation gradients pile up  s.py:4" in capsys.readouterr().err
    assert run("--strict") == 3
    assert run("--strict", "--ignore", "grad-accumulation") == 0  # only an info diagnostic is left
    assert [d.code for d in load(tmp_path / "out" / "trace.json").diagnostics] == ["no-gradient"]
    assert run("--ignore", "grad-accumulation", "--ignore", "no-gradient") == 0
    assert "no diagnostics" in capsys.readouterr().err


def test_the_commands_process_exits_with_startup_objects_frozen_and_the_scripts_finalized(tmp_path):
    """`gradscope trace` ends its process: torch's startup objects stay frozen (the
    interpreter's last collections skip them), while the script's own objects, made after
    the freeze, are finalized at exit as ever. A caller's `main(argv)` goes on: it gets
    every object back for its collector."""
    script = tmp_path / "s.py"
    script.write_text(textwrap.dedent("""\
        import atexit, gc, os
        class Logger:
            def __del__(self, write=os.write):
                write(1, b"finalized\\n")
        log = Logger()
        log.me = log  # a cycle: only the collector finalizes it
        atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))
        """))
    r = run_gradscope("trace", "-o", "out", str(script), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["frozen at exit: True", "finalized"]

    quiet = tmp_path / "quiet.py"
    quiet.write_text("import torch\n(torch.ones(2, requires_grad=True) * 3).sum().backward()\n")
    assert gc.get_freeze_count() == 0
    with pytest.raises(SystemExit) as info:
        cli.main(["trace", "-o", str(tmp_path / "again"), str(quiet)])
    assert info.value.code == 0 and gc.get_freeze_count() == 0
    assert len(load(tmp_path / "again" / "trace.json").passes) == 1
