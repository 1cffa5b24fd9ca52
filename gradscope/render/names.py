"""Names as drawn: short enough for a box, never two alike.

A node's name is the variable its line assigned, so two nodes can share one (`h = ...`
on three lines, or in a loop): the picture tells them apart in forward order, `h`, `h_1`,
`h_2` (skipping names the graph already uses). A long name (a parameter deep in a model,
`encoder.layers.10.self_attn.out_proj.weight`) is drawn as its shortest trailing run of
dotted parts that no other name of the graph ends with (`…10.self_attn.out_proj.weight`),
never cut inside a part: two names that differ stay different on the picture.
"""

from __future__ import annotations

from ..model import Node

LIMIT = 48  # names up to this long are drawn whole


def display_names(nodes: list[Node], limit: int = LIMIT) -> dict[str, str]:
    """node id -> the name to draw; `nodes` in forward order (the first of two `h` stays `h`)."""
    names = _told_apart(nodes)
    every = list(names.values())
    return {node_id: _shortened(name, every, limit) for node_id, name in names.items()}


def _told_apart(nodes: list[Node]) -> dict[str, str]:
    taken = {n.name for n in nodes if n.name}
    seen: set[str] = set()
    counts: dict[str, int] = {}
    names = {}
    for n in nodes:
        name = n.name or ""
        if name and name in seen:
            k = counts.get(name, 1)
            while f"{name}_{k}" in taken:
                k += 1
            counts[name] = k + 1
            taken.add(f"{name}_{k}")
            name = f"{name}_{k}"
        seen.add(name)
        names[n.id] = name
    return names


def _shortened(name: str, names: list[str], limit: int) -> str:
    if len(name) <= limit:
        return name
    parts = name.split(".")
    others = [other for other in names if other != name]
    for k in range(1, len(parts)):
        tail = ".".join(parts[-k:])
        if any(other == tail or other.endswith("." + tail) for other in others):
            continue  # another name ends alike: a longer tail is needed
        shown = "…" + tail
        if len(shown) <= limit:
            return shown
        break  # the shortest telling tail is too long already: draw the name whole
    return name
