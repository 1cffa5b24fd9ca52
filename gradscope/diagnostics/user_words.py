"""The user's own words for hints: variable names read from the user's source, never node labels.

A node's name is either a name people gave (an assignment target, `gradscope.name`, a
parameter's name) or a label gradscope made up (`lstm_3`, `add_1`, `leaf_2`). A hint that
tells someone what to write must use the first kind, or say it neutrally.

The variable that carries a tensor from one loop iteration to the next (`hidden` in
`logits, hidden = model(x, hidden)`) is read with `ast` from the user's file (through
linecache, so a notebook cell works while its kernel lives), falling back to the single
line a Source keeps when the file is gone. Nothing here runs or imports the user's code.

Also here: whether the code already scales its loss (`loss = loss / accumulation_steps`)
before backward, read from the captured graph, so that a hint does not suggest it again.
"""

from __future__ import annotations

import ast
import keyword
import linecache
import re
from dataclasses import dataclass
from typing import Iterator

from ..model import Graph, Node, Pass, Source

# Calls whose result is a plain number or a detached tensor: such a value carries no history.
_NO_HISTORY_CALLS = {"item", "float", "int", "len", "detach", "tolist", "numpy"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*(?:\.[A-Za-z_][A-Za-z_0-9]*)*")


def is_made_up(node: Node) -> bool:
    """True when `node.name` is a label gradscope made up (`add_1`, `lstm_3`, `leaf`), not a
    name from the user's code."""
    name = node.name or ""
    if not name:
        return True
    base = (node.op if node.kind == "op" else "leaf") or ""
    return bool(base) and re.fullmatch(rf"{re.escape(base)}(?:_\d+)?", name) is not None


def variable(node: Node | None) -> str | None:
    """The node's name when a user could type it as a variable (`h`, `self.h`), else None."""
    if node is None or is_made_up(node):
        return None
    return as_variable(node.name)


def as_variable(name: str | None) -> str | None:
    """`name` when it is a Python variable or attribute path, else None (`0.weight` is not)."""
    if not name or not _NAME.fullmatch(name) or any(keyword.iskeyword(p) for p in name.split(".")):
        return None
    return name


def backward_receiver(source: Source | None) -> str | None:
    """`y` from `y.backward()` (or `torch.autograd.backward(y)`) on the backward's line;
    `(a * b)` from `(a * b).backward()`."""
    stmt = _line_statement(source.code) if source is not None else None
    if stmt is None:
        return None
    for call in ast.walk(stmt):
        if not isinstance(call, ast.Call):
            continue
        f = call.func
        if isinstance(f, ast.Attribute) and f.attr == "backward":
            receiver = call.args[0] if isinstance(f.value, ast.Attribute) and f.value.attr == "autograd" \
                and call.args else f.value  # torch.autograd.backward(y) or y.backward()
            text = _text(receiver)
            primary = isinstance(receiver, (ast.Name, ast.Attribute, ast.Call, ast.Subscript))
            return (text if primary else f"({text})") if text else None
    return None


# -- the variable carried from one iteration to the next ------------------------------------------


@dataclass(frozen=True)
class Carried:
    """Variables that carry a tensor (and its history) into the next iteration, and the
    statement that assigns them."""

    names: tuple[str, ...]
    source: Source | None
    summed: bool = False  # a running sum: `total += loss`, `total = total + loss`


def carried_variables(backward: Source | None, made_at: Source | None) -> Carried | None:
    """The user's variables that carry a tensor across iterations of the loop around the
    backward at `backward`, preferring the statement that made the tensor (`made_at`).

    A recurrence (`h = f(x, h)`, `out, (h, c) = lstm(x, (h, c))`, `total = total + loss`)
    in the loop's body is the usual carrier; failing that, the statement at `made_at` when
    it is one (`self.hidden = ... self.hidden ...` inside a model); failing that, a single
    variable read in the loop before the statement that assigns it. None when unsure.
    """
    loop = _loop_around(backward)
    if loop is not None:
        file = backward.file  # type: ignore[union-attr]
        recurrences = [(s, names) for s in _statements(loop.body) if (names := _recurrent_targets(s))]
        feeding = _feeding(loop, backward)  # type: ignore[arg-type]
        if any(set(names) & feeding for _, names in recurrences):  # not `total += loss` beside `hidden`
            recurrences = [(s, [n for n in names if n in feeding]) for s, names in recurrences
                           if set(names) & feeding]
        if made_at is not None and made_at.file == file:
            for s, names in recurrences:
                if s.lineno <= made_at.line <= (s.end_lineno or s.lineno):
                    return Carried(tuple(names), _source_of(file, s), _is_sum(s))
        if recurrences:
            names = list(dict.fromkeys(n for _, ns in recurrences for n in ns))[:3]
            return Carried(tuple(names), _source_of(file, recurrences[0][0]), _is_sum(recurrences[0][0]))
    made = _statement_at(made_at) if made_at is not None else None
    if made is not None and (names := _recurrent_targets(made)):
        return Carried(tuple(names), made_at, _is_sum(made))
    if loop is not None:
        read_first = _read_before_assigned(loop)
        if len(read_first) == 1:
            (name, stmt), = read_first.items()
            return Carried((name,), _source_of(backward.file, stmt))  # type: ignore[union-attr]
    return None


def _feeding(loop: ast.For | ast.AsyncFor | ast.While, backward: Source) -> set[str]:
    """Variables the backward's tensor is computed from within one iteration of the loop
    (a backward slice over the body's assignments)."""
    stmt = _statement_at(backward)
    needed = _reads(stmt) if stmt is not None else set()
    assigns = [(set(_text(t) for t in _flat_targets(s.targets if isinstance(s, ast.Assign) else [s.target])),
                _reads(s.value) if s.value is not None else set())
               for s in _statements(loop.body) if isinstance(s, (ast.Assign, ast.AugAssign, ast.AnnAssign))]
    grew = True
    while grew:
        grew = False
        for targets, reads in assigns:
            if targets & needed and not reads <= needed:
                needed |= reads
                grew = True
    return needed


def detach_code(names: tuple[str, ...] | list[str]) -> str:
    """"`h = h.detach()` and `c = c.detach()`"."""
    parts = [f"`{n} = {n}.detach()`" for n in names]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _is_sum(stmt: ast.stmt) -> bool:
    """`total += x` or `total = total + x`: a running sum, not a state fed back into a model."""
    if isinstance(stmt, ast.AugAssign):
        return isinstance(stmt.op, ast.Add)
    return isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.value, ast.BinOp) \
        and isinstance(stmt.value.op, ast.Add) and _text(stmt.targets[0]) in (_text(stmt.value.left),
                                                                             _text(stmt.value.right))


def _recurrent_targets(stmt: ast.stmt) -> list[str]:
    """Targets of an assignment that its own right-hand side reads, when the value can carry
    history (not `i = i + 1`, not `total += loss.item()`)."""
    targets: list[ast.expr]
    if isinstance(stmt, ast.AugAssign):
        targets, value, aug = [stmt.target], stmt.value, True
    elif isinstance(stmt, ast.Assign):
        targets, value, aug = stmt.targets, stmt.value, False
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        targets, value, aug = [stmt.target], stmt.value, False
    else:
        return []
    if not _may_carry_history(value):
        return []
    reads = _reads(value)
    out = []
    for t in _flat_targets(targets):
        text = _text(t)
        if as_variable(text) and (aug or text in reads):
            if not aug and isinstance(value, ast.BinOp) and _is_number(value.left if _text(value.right) == text
                                                                        else value.right):
                continue  # `i = i + 1`
            out.append(text)
    return out


def _may_carry_history(value: ast.expr) -> bool:
    if _is_number(value):
        return False
    if isinstance(value, ast.Call):
        f = value.func
        called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        if called in _NO_HISTORY_CALLS:
            return False
    return True


def _is_number(e: ast.expr) -> bool:
    return isinstance(e, ast.Constant) and isinstance(e.value, (int, float, complex)) and not isinstance(e.value, bool)


def _read_before_assigned(loop: ast.For | ast.AsyncFor | ast.While) -> dict[str, ast.stmt]:
    """Variables a loop body reads before (in its order) the statement that assigns them a
    value that may carry history: what one iteration hands to the next."""
    loop_vars = {_text(t) for t in _flat_targets([loop.target])} if isinstance(loop, ast.For) else set()
    first_read: dict[str, int] = {}
    assigned: dict[str, ast.stmt] = {}
    for k, s in enumerate(_statements(loop.body)):
        value = getattr(s, "value", None)
        for name in _reads(s if value is None else value):
            first_read.setdefault(name, k)
        if isinstance(s, (ast.Assign, ast.AnnAssign)) and value is not None and _may_carry_history(value):
            for t in _flat_targets(s.targets if isinstance(s, ast.Assign) else [s.target]):
                text = _text(t)
                if as_variable(text) and text not in assigned:
                    assigned[text] = s
                    first_read.setdefault(text, 1 << 30)
    order = {id(s): k for k, s in enumerate(_statements(loop.body))}
    return {n: s for n, s in assigned.items() if n not in loop_vars and first_read[n] < order[id(s)]}


def _flat_targets(targets: list[ast.expr]) -> Iterator[ast.expr]:
    for t in targets:
        if isinstance(t, (ast.Tuple, ast.List)):
            yield from _flat_targets(list(t.elts))
        elif isinstance(t, ast.Starred):
            yield from _flat_targets([t.value])
        elif isinstance(t, (ast.Name, ast.Attribute)):
            yield t


def _reads(expr: ast.AST) -> set[str]:
    """Variables and attribute paths (`h`, `self.hidden`) an expression reads."""
    out = set()
    for e in ast.walk(expr):
        if isinstance(e, (ast.Name, ast.Attribute)) and isinstance(e.ctx, ast.Load):
            text = _text(e)
            if as_variable(text):
                out.add(text)
    return out


def _text(e: ast.AST) -> str:
    try:
        return ast.unparse(e)
    except Exception:
        return ""


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The simple statements of a body, nested blocks included (in source order), functions
    and classes defined there excluded."""
    for s in body:
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        blocks = [getattr(s, f, None) for f in ("body", "orelse", "finalbody")]
        blocks += [h.body for h in getattr(s, "handlers", [])]
        nested = [b for b in blocks if isinstance(b, list)]
        if nested:
            for b in nested:
                yield from _statements(b)
        else:
            yield s


# -- reading the user's file --------------------------------------------------------------------

_trees: dict[str, tuple[str, ast.Module | None]] = {}


def _tree(file: str) -> ast.Module | None:
    text = "".join(linecache.getlines(file))
    kept = _trees.get(file)
    if kept is not None and kept[0] == text:
        return kept[1]
    try:
        tree = ast.parse(text) if text else None
    except (SyntaxError, ValueError):
        tree = None
    _trees[file] = (text, tree)
    return tree


def _loop_around(source: Source | None) -> ast.For | ast.AsyncFor | ast.While | None:
    """The innermost for/while loop of the file whose body holds the line."""
    tree = _tree(source.file) if source is not None else None
    if tree is None:
        return None
    best = None
    for n in ast.walk(tree):
        if isinstance(n, (ast.For, ast.AsyncFor, ast.While)) and n.body and \
                n.body[0].lineno <= source.line <= (n.end_lineno or n.lineno):  # type: ignore[union-attr]
            if best is None or n.lineno >= best.lineno:
                best = n
    return best


def _statement_at(source: Source) -> ast.stmt | None:
    """The simple statement at a line of the file (multi-line statements whole), else the
    statement the Source's own line text holds."""
    tree = _tree(source.file)
    if tree is not None:
        for s in _all_statements(tree):
            if s.lineno <= source.line <= (s.end_lineno or s.lineno):
                return s
    return _line_statement(source.code)


def _all_statements(tree: ast.Module) -> Iterator[ast.stmt]:
    yield from _statements(tree.body)
    for f in ast.walk(tree):
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _statements(f.body)


def _line_statement(code: str) -> ast.stmt | None:
    try:
        body = ast.parse(code.strip()).body
    except (SyntaxError, ValueError):
        return None
    return body[0] if len(body) == 1 else None


def _source_of(file: str, stmt: ast.stmt) -> Source:
    return Source(file=file, line=stmt.lineno, code=linecache.getline(file, stmt.lineno).strip())


# -- the loss already scaled before backward ----------------------------------------------------


@dataclass(frozen=True)
class LossScale:
    """The loss reaching backward was divided by a constant: by `divisor` (None when the
    trace cannot tell the number) at `source`."""

    divisor: float | None
    source: Source | None


def loss_divided(p: Pass) -> LossScale | None:
    """Whether the root of this pass is its loss divided by a constant (`loss / k`, `loss * (1 / k)`),
    possibly under a further constant scale (a GradScaler's `scale(loss)`), read from the graph:
    a div or mul with one input that carries gradient."""
    g: Graph = p.graph
    into: dict[str, list] = {}
    for e in g.edges:
        into.setdefault(e.dst, []).append(e)
    by_id = {n.id: n for n in g.nodes}
    node = g.roots[0] if len(g.roots) == 1 else None
    for _ in range(4):
        if node is None or node.kind != "op" or node.op not in ("div", "mul", "true_divide") \
                or len(into.get(node.id, [])) != 1:
            return None
        edge = into[node.id][0]
        local = edge.local if isinstance(edge.local, (int, float)) and edge.local else None
        if node.op in ("div", "true_divide"):
            return LossScale(round(1 / local, 6) if local else None, node.source)
        if local is not None and 0 < abs(local) < 1:
            return LossScale(round(1 / local, 6), node.source)
        if local is None and node.source is not None and "/" in node.source.code:
            return LossScale(None, node.source)  # `loss * (1 / k)` without a recorded derivative
        node = by_id.get(edge.src)  # a constant scale above the division (GradScaler)
    return None
