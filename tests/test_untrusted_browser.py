"""A crafted trace.json's report in real headless Chromium runs none of its script: the
text is escaped, and the Content-Security-Policy stops a script that got in anyway."""

from __future__ import annotations

import json

from conftest import run_gradscope
from test_report_browser import chromium, console_errors
from test_untrusted_traces import base_docs, taint  # noqa: F401  (a fixture)

PWN = "document.documentElement.setAttribute('data-'+'pwned','1')"
PAYLOADS = [f"<script>{PWN}</script>", f'"><img src=x onerror="{PWN}">', f"<svg onload=\"{PWN}\"></svg>"]
RAN = 'data-pwned="1"'


def test_a_crafted_traces_report_runs_none_of_its_script(base_docs, tmp_path):
    doc = base_docs[0]
    for payload in PAYLOADS:
        doc = taint(doc, payload)
    (tmp_path / "crafted.json").write_text(json.dumps(doc))
    r = run_gradscope("render", "crafted.json", "-o", "report.html", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = tmp_path / "report.html"
    shown = chromium(report, tmp_path / "profile", "--dump-dom")
    assert shown.returncode == 0 and "&lt;script&gt;" in shown.stdout and "<svg" in shown.stdout
    assert RAN not in shown.stdout and console_errors(shown.stderr) == []

    # the second lock: a script slipped into the page (as an escaping bug would) is refused
    page = report.read_text().replace("<body>", f"<body><script>{PWN}</script>", 1)
    report.write_text(page)
    assert RAN not in chromium(report, tmp_path / "profile", "--dump-dom").stdout
    report.write_text(page.replace('http-equiv="Content-Security-Policy"', 'name="no-policy"'))
    assert RAN in chromium(report, tmp_path / "profile", "--dump-dom").stdout  # without it, it would run


def test_a_bad_trace_is_one_line_and_exit_2_from_the_command(base_docs, tmp_path):
    doc = json.loads(json.dumps(base_docs[0]))
    doc["passes"][1]["step"] = "<b>3</b>"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    r = run_gradscope("render", "bad.json", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == "gradscope: bad.json: gradscope trace is malformed: passes[1].step: expected an integer " \
                       "from 0 to 2**53, got a string\n"
