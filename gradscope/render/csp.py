"""The report's Content-Security-Policy: the page runs its own scripts and nothing else.

Every piece of text from a trace is escaped on its way into the report; the policy is
the second lock. Scripts are allowed by the hash of their exact text, so a script that
found its way into the page (a crafted trace.json, an escaping bug) does not run, and
the page loads nothing from anywhere: styles and pictures are inline.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Sequence


def script_hash(script: str) -> str:
    """The CSP source that allows an inline `<script>` with exactly this text."""
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def policy(scripts: Sequence[str] = (), wasm: bool = False) -> str:
    """The policy for a page whose own inline scripts are `scripts` (their exact text).
    `wasm`: they may compile WebAssembly (the explorer's Graphviz, whose module is inside
    its script): `'wasm-unsafe-eval'` allows that and nothing else (no `eval`)."""
    allowed = " ".join(script_hash(s) for s in scripts) or "'none'"
    if wasm:
        allowed += " 'wasm-unsafe-eval'"
    return (f"default-src 'none'; script-src {allowed}; style-src 'unsafe-inline'; img-src data:; "
            "base-uri 'none'; form-action 'none'")


def meta_tag(scripts: Sequence[str] = (), wasm: bool = False) -> str:
    """`<meta http-equiv="Content-Security-Policy" ...>` for the page's `<head>`."""
    return f'<meta http-equiv="Content-Security-Policy" content="{policy(scripts, wasm)}">'
