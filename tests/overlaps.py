"""Bounding boxes of what Graphviz draws, and the pairs of them that overlap.

The graph is laid out with the real engine (pygraphviz's bundled Graphviz) to its JSON
output, which lists every text it draws with its position, font size and width as the
layout measured it, and every node's box.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pygraphviz

SLACK = 0.5  # points: boxes that only touch do not overlap


@dataclass(frozen=True)
class Box:
    what: str  # "node n3", "text of edge n1->n0: grad 2", ...
    owner: str  # the node or edge it belongs to
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: "Box") -> bool:
        return (self.x0 < other.x1 - SLACK and other.x0 < self.x1 - SLACK
                and self.y0 < other.y1 - SLACK and other.y0 < self.y1 - SLACK)

    def inside(self, other: "Box") -> bool:
        return (self.x0 >= other.x0 - SLACK and self.x1 <= other.x1 + SLACK
                and self.y0 >= other.y0 - SLACK and self.y1 <= other.y1 + SLACK)


def laid_out(dot: str) -> dict:
    return json.loads(pygraphviz.AGraph(string=dot).draw(format="json", prog="dot"))


def _texts(draw_ops: list, what: str, owner: str) -> list[Box]:
    boxes, size = [], 14.0
    for op in draw_ops or []:
        if op["op"] == "F":
            size = float(op["size"])
        elif op["op"] == "T" and op["text"].strip():
            x, y, w = op["pt"][0], op["pt"][1], op["width"]
            x0 = {"l": x, "c": x - w / 2, "r": x - w}[op["align"]]
            # from below the baseline (descenders) to the cap height
            boxes.append(Box(f"{what}: {op['text']!r}", owner, x0, y - 0.22 * size, x0 + w, y + 0.78 * size))
    return boxes


def boxes(layout: dict) -> tuple[list[Box], list[Box], list[Box]]:
    """(node boxes, texts of nodes, texts of edges and of the graph's own label)."""
    nodes, node_texts, other_texts = [], [], []
    names = {}
    for obj in layout.get("objects", []):
        if "pos" not in obj or "width" not in obj:
            continue  # a cluster
        names[obj["_gvid"]] = obj["name"]
        x, y = map(float, obj["pos"].split(","))
        w, h = float(obj["width"]) * 72 / 2, float(obj["height"]) * 72 / 2
        nodes.append(Box(f"node {obj['name']}", obj["name"], x - w, y - h, x + w, y + h))
        node_texts += _texts(obj.get("_ldraw_"), f"text of node {obj['name']}", obj["name"])
    for e in layout.get("edges", []):
        owner = f"{names.get(e['tail'])}->{names.get(e['head'])}"
        other_texts += _texts(e.get("_ldraw_"), f"text of edge {owner}", owner)
    for obj in layout.get("objects", []):  # cluster labels
        if "pos" not in obj:
            other_texts += _texts(obj.get("_ldraw_"), f"label of {obj.get('name')}", obj.get("name", ""))
    other_texts += _texts(layout.get("_ldraw_"), "graph label", "graph")
    return nodes, node_texts, other_texts


def overlaps(dot: str) -> list[str]:
    """Every pair that overlaps: node boxes, a node's text outside its box or on another
    node, texts of edges and labels on nodes or on each other."""
    nodes, node_texts, other_texts = boxes(laid_out(dot))
    found = []
    for i, a in enumerate(nodes):
        found += [f"{a.what} overlaps {b.what}" for b in nodes[i + 1:] if a.overlaps(b)]
    own = {n.owner: n for n in nodes}
    for t in node_texts:
        if not t.inside(own[t.owner]):
            found.append(f"{t.what} runs out of its box")
        found += [f"{t.what} lies on {n.what}" for n in nodes if n.owner != t.owner and t.overlaps(n)]
    for i, t in enumerate(other_texts):
        found += [f"{t.what} lies on {n.what}" for n in nodes if t.overlaps(n)]
        found += [f"{t.what} overlaps {u.what}" for u in other_texts[i + 1:] if u.owner != t.owner and t.overlaps(u)]
    return found
