"""Unrolled loops: the same op sequence, at the same source lines, run N times in a row.

An RNN unrolled over T steps or an episode of T steps builds a graph with T copies of one
piece, module or not. Read in forward order (inputs before their consumers, one step's
new nodes after the last's), such a graph is a token sequence `prefix body^T suffix`,
where a node's token is its op, source line and module. `loops(graph)` finds those
runs of repeats, so a view can draw the body once, marked ×T; `family_key(graph)` is
equal for graphs that differ only in how many times their bodies ran (the same program
on episodes of different lengths), so a report draws one graph of a family, not each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

from ..model import Graph, Node
from .memo import Memo, node_index

MIN_COVER = 16  # ops a run must hold: `q, k, v = (t.view(..) for t in qkv.split(..))` is no loop to fold
_MAX_CANDIDATES = 64  # periods tried from one place: the next places its token recurs
_MOD = (1 << 61) - 1
_BASE = 1_000_003
_LOOPS: Memo[list[Loop]] = Memo()  # each graph's loops, found once


@dataclass
class Loop:
    """`count` consecutive copies of a body of `period` nodes: `blocks[k]` is the k-th copy's
    node ids, in the same order in every copy (`blocks[k][j]` is the j-th node of copy k)."""

    period: int
    blocks: list[list[str]]

    @property
    def count(self) -> int:
        return len(self.blocks)

    def counterparts(self) -> dict[str, str]:
        """Each node of copies 1.. -> the node in the same place of copy 0 (drawn for all)."""
        first = self.blocks[0]
        return {n: first[j] for block in self.blocks[1:] for j, n in enumerate(block)}


def forward_order(graph: Graph) -> list[Node]:
    """Op nodes with inputs before consumers: a depth-first walk from the roots, each
    node's inputs in order (so each step of a loop comes out as one contiguous piece)."""
    inputs: dict[str, list[tuple[int, str]]] = {}
    consumed: set[str] = set()
    for e in graph.edges:
        inputs.setdefault(e.dst, []).append((e.index, e.src))
        consumed.add(e.src)
    for v in inputs.values():
        v.sort()
    roots = [n.id for n in graph.nodes if n.is_root or n.id not in consumed]
    done: set[str] = set()
    order: list[Node] = []
    by_id = node_index(graph)
    for root in roots:
        if root in done:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        done.add(root)
        while stack:
            nid, i = stack[-1]
            ins = inputs.get(nid, ())
            if i < len(ins):
                stack[-1] = (nid, i + 1)
                src = ins[i][1]
                if src not in done:
                    done.add(src)
                    stack.append((src, 0))
                continue
            stack.pop()
            node = by_id[nid]
            if node.kind == "op":
                order.append(node)
    return order


def token(node: Node) -> tuple:
    """What two copies of a loop's body agree on, node by node."""
    return node.grad_fn, node.source.short if node.source else "", node.module or ""


def loops(graph: Graph) -> list[Loop]:
    """The runs of repeats in `graph` (at least 2 copies, `MIN_COVER` ops in all), in
    forward order, none inside another. Kept while the graph lives (`memo.py`)."""
    stamp = (id(graph.nodes), len(graph.nodes), id(graph.edges), len(graph.edges))
    return _LOOPS.get(graph, stamp, lambda: _loops(graph))


def _loops(graph: Graph) -> list[Loop]:
    order = forward_order(graph)
    return [Loop(period, [[n.id for n in order[s + k * period: s + (k + 1) * period]] for k in range(count)])
            for s, period, count in _runs([token(n) for n in order])]


def family_key(graph: Graph) -> Hashable:
    """Equal for graphs that differ only in how many times their loops ran: the forward
    token sequence with each run of repeats written once, and the leaves' names."""
    order = forward_order(graph)
    tokens = [token(n) for n in order]
    parts: list = []
    i = 0
    for s, period, count in _runs(tokens):
        parts += tokens[i:s]
        parts.append(("repeat", tuple(tokens[s:s + period])))
        i = s + period * count
    parts += tokens[i:]
    leaves = tuple(sorted(n.name for n in graph.nodes if n.kind == "leaf"))
    return tuple(parts), leaves


def main_count(graph: Graph) -> int | None:
    """How many times the graph's biggest loop ran (None without one): its "length"."""
    found = loops(graph)
    return max(found, key=lambda lp: lp.period * lp.count).count if found else None


def _runs(tokens: list) -> list[tuple[int, int, int]]:
    """(start, period, count) of each run of repeats, greedily from the left, the run that
    covers most at each place; a run starts where its body's first statement does."""
    ids: dict = {}
    seq = [ids.setdefault(t, len(ids) + 1) for t in tokens]
    n = len(seq)
    prefix = [0] * (n + 1)
    power = [1] * (n + 1)
    for i, x in enumerate(seq):
        prefix[i + 1] = (prefix[i] * _BASE + x) % _MOD
        power[i + 1] = (power[i] * _BASE) % _MOD

    def same(a: int, b: int, length: int) -> bool:  # seq[a:a+length] == seq[b:b+length]
        ha = (prefix[a + length] - prefix[a] * power[length]) % _MOD
        hb = (prefix[b + length] - prefix[b] * power[length]) % _MOD
        return ha == hb

    def count_at(s: int, p: int) -> int:
        k = 1
        while s + (k + 1) * p <= n and same(s, s + k * p, p):
            k += 1
        return k

    later: dict[int, list[int]] = {}
    for i, x in enumerate(seq):
        later.setdefault(x, []).append(i)
    place = {x: 0 for x in later}
    runs = []
    i = 0
    while i < n:
        x = seq[i]
        positions = later[x]
        while positions[place[x]] <= i:
            place[x] += 1
            if place[x] == len(positions):
                break
        best = (0, 0, 0)  # (cover, -period, count)
        if place[x] < len(positions):
            for j in positions[place[x]: place[x] + _MAX_CANDIDATES]:
                p = j - i
                if i + 2 * p > n:
                    break
                k = count_at(i, p)
                if k > 1 and (k * p, -p) > best[:2]:
                    best = (k * p, -p, k)
        cover, p, k = best[0], -best[1], best[2]
        if cover < MIN_COVER:
            i += 1
            continue
        s = _statement_start(tokens, i, p)
        k = count_at(s, p)
        if k < 2 or k * p < MIN_COVER:
            s, k = i, count_at(i, p)
        runs.append((s, p, k))
        i = s + k * p
    return runs


def _statement_start(tokens: list, i: int, p: int) -> int:
    """Where in the first copy (i .. i+p) the body's first statement begins: the op with
    the smallest source line whose predecessor is at another line (a `for` loop's body
    starts at its top)."""
    def line(t: tuple) -> tuple[str, int]:
        file, _, num = t[1].rpartition(":")
        return (file, int(num)) if num.isdigit() else ("~", 0)

    best, where = None, i
    for s in range(i, min(i + p, len(tokens))):
        if s > 0 and tokens[s - 1][1] == tokens[s][1]:
            continue
        key = line(tokens[s])
        if key[0] != "~" and (best is None or key < best):
            best, where = key, s
    return where
