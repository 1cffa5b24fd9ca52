"""One traced program, many processes: under torchrun (or any torch.distributed launch)
each rank writes its own folder, `rank-N/`, under the output folder, and rank 0 writes
`index.html` linking them and compares the ranks' gradients where DDP promises them equal.

The ranks share nothing but the file system: each writes a small `leaf-grads.json`
(atomically) before its other outputs, and rank 0 waits a bounded time for the others'.
"""

from __future__ import annotations

import html
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from .diagnostics.ranks import CODE, ddp_gradients_differ, leaf_grads
from .model import Diagnostic, Trace

GRADS = "leaf-grads.json"
INDEX = "index.html"
WAIT_S = 60.0  # how long rank 0 waits for the other ranks' gradients


def rank_and_world() -> tuple[int, int] | None:
    """(rank, world size) when this process is one of several ranks, else None: from an
    initialised torch.distributed group, else from torchrun's RANK/WORLD_SIZE variables."""
    dist = sys.modules.get("torch.distributed")  # never import torch for this
    try:
        if dist is not None and dist.is_available() and dist.is_initialized():
            world = dist.get_world_size()
            return (dist.get_rank(), world) if world > 1 else None
    except (RuntimeError, ValueError):
        pass
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    return (rank, world) if world > 1 and 0 <= rank < world else None


def rank_folder(out_dir: Path, rank: int) -> Path:
    return out_dir / f"rank-{rank}"


def share_gradients(trace: Trace, out_dir: Path, rank: int) -> None:
    """Write this rank's parameter gradients summary for rank 0 to compare (atomically:
    rank 0 never reads half a file)."""
    folder = rank_folder(out_dir, rank)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{GRADS}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(leaf_grads(trace)), encoding="utf-8")
    os.replace(tmp, folder / GRADS)


def compare_ranks(trace: Trace, out_dir: Path, world: int, wait_s: float = WAIT_S) -> tuple[list[Diagnostic], list[int]]:
    """Rank 0: the diagnostics from comparing its gradients with every other rank's, and the
    ranks whose summary did not arrive within `wait_s` seconds."""
    others: dict[int, dict] = {}
    missing = list(range(1, world))
    end = time.monotonic() + wait_s
    while missing:
        for r in list(missing):
            try:
                others[r] = json.loads((rank_folder(out_dir, r) / GRADS).read_text(encoding="utf-8"))
                missing.remove(r)
            except (OSError, ValueError):
                pass
        if not missing or time.monotonic() >= end:
            break
        time.sleep(0.1)
    return ddp_gradients_differ(trace, 0, others), missing


def write_index(out_dir: Path, world: int, diagnostics: Sequence[Diagnostic], missing: Sequence[int],
                target: str = "report.html") -> Path:
    """Rank 0's `index.html`: a link to each rank's `target` (its report, or its trace when
    there is no report), and what the comparison of their gradients found (the
    ddp-gradients-differ among `diagnostics`). Other ranks may still be writing theirs."""
    rows = []
    for r in range(world):
        late = " (had not written its gradients when rank 0 compared)" if r in missing else ""
        rows.append(f'<li><a href="rank-{r}/{html.escape(target)}">rank {r}</a>{html.escape(late)}</li>')
    found = "".join(f"<li><strong>{html.escape(d.severity)} {html.escape(d.code)}</strong> "
                    f"{html.escape(d.title)}: {html.escape(d.message)}</li>" for d in diagnostics if d.code == CODE)
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>gradscope · ranks</title></head>'
            f"<body><h1>gradscope: {world} ranks</h1><ul>{''.join(rows)}</ul>"
            f"<h2>Across ranks</h2>{f'<ul>{found}</ul>' if found else '<p>The ranks agree where DDP promises it.</p>'}"
            "</body></html>\n")
    path = out_dir / INDEX
    path.write_text(page, encoding="utf-8")
    return path


def save(trace: Trace, path: Path) -> Path:
    """`trace(save=PATH)`: in a single process, PATH itself; in one rank of several,
    `rank-N/NAME` beside PATH, with rank 0 comparing the ranks' gradients (into its own
    trace's diagnostics) and writing `index.html` beside PATH."""
    ranks = rank_and_world()
    if ranks is None:
        return trace.save(path)
    rank, world = ranks
    root = path.parent
    share_gradients(trace, root, rank)
    missing: list[int] = []
    if rank == 0:
        found, missing = compare_ranks(trace, root, world)
        trace.diagnostics += found
    saved = trace.save(rank_folder(root, rank) / path.name)
    if rank == 0:
        write_index(root, world, trace.diagnostics, missing, target=path.name)
    return saved
