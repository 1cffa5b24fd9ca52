"""The record of what gradscope wrote into an output folder (`.gradscope-files`), so that
a later run removes its own stale pictures and never a file of the user's that happens
to be called `pass-001.svg`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

MANIFEST = ".gradscope-files"
_KEPT = {"trace.json", "report.html"}  # rewritten by every run, never removed


def _listed(out_dir: Path) -> list[str]:
    try:
        names = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):  # none yet, or not ours to trust
        return []
    # only plain names in this folder: a tampered manifest cannot reach outside it
    return [n for n in names if isinstance(n, str) and n and Path(n).name == n and n not in (".", "..")]


def remove_stale(out_dir: Path) -> None:
    """Delete the pictures an earlier gradscope run listed here (they would pass for this
    run's); files gradscope did not write are left alone."""
    for name in _listed(out_dir):
        if name not in _KEPT and name != MANIFEST:
            (out_dir / name).unlink(missing_ok=True)


def record(out_dir: Path, written: Iterable[Path]) -> None:
    """List `written` (the files in `out_dir` among them) in the folder's manifest, with
    what it already lists and still exists."""
    names = [n for n in _listed(out_dir) if (out_dir / n).exists()]
    for path in written:
        if path.parent.absolute() == out_dir.absolute() and path.name not in names:
            names.append(path.name)
    (out_dir / MANIFEST).write_text(json.dumps({"files": names}, indent=1) + "\n", encoding="utf-8")
