"""Naming a tensor by the variable a consuming line passes it as.

A leaf made before the trace started was never seen being assigned. The line that uses it
still names it: in `a = torch.add(w, x)` the add's input 0 is `w`. This reads the line's
syntax (never the frame's variables) and answers only when the line is unambiguous: one
call or operator matching the op, and a plain variable name at that input's position.
"""

from __future__ import annotations

import ast
from functools import lru_cache

# forward op name -> the Python operator that runs it
_OPERATORS: dict[str, type] = {
    "add": ast.Add, "sub": ast.Sub, "mul": ast.Mult, "div": ast.Div, "truediv": ast.Div,
    "matmul": ast.MatMult, "pow": ast.Pow, "floordiv": ast.FloorDiv, "mod": ast.Mod,
}
_FUNCTION_MODULES = {"torch", "F", "functional", "nn"}


def argument_name(code: str, op: str, index: int, tensor_args: int = 2) -> str | None:
    """The variable passed as input `index` of `op` on the line `code`, when unambiguous.

    `tensor_args`: how many tensors the op received. An operator with one tensor may have
    run reflected (`k * s` runs as `s.mul(k)` when k is a number, making s input 0), so
    there the tensor is only known when the other operand is a literal.
    """
    found = _inputs_of(code, op)
    if found is None:
        return None
    inputs, is_operator = found
    if is_operator and tensor_args < 2:
        names = [name for name in inputs if name is not None]
        if len(names) != 1 or None not in inputs:
            return None
        return names[0] if index == 0 else None
    return inputs[index] if index < len(inputs) else None


@lru_cache(maxsize=4096)
def _inputs_of(code: str, op: str) -> tuple[tuple[str | None, ...], bool] | None:
    """The plain names at each input position of the one `op` on the line, and whether
    that op is an operator (`w * x`) rather than a call."""
    try:
        tree = ast.parse(code.strip().rstrip(":"))
    except SyntaxError:
        return None
    op = op.rstrip("_")
    candidates = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, _OPERATORS.get(op, ())):
            candidates.append(((node.left, node.right), True))
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, _OPERATORS.get(op, ())):
            candidates.append(((node.target, node.value), True))
        elif isinstance(node, ast.Call) and _called_name(node.func) == op:
            func = node.func
            if isinstance(func, ast.Attribute) and not _is_module(func.value):
                candidates.append(((func.value, *node.args), False))  # a method: w.add(x)
            else:
                candidates.append((tuple(node.args), False))  # a function: torch.add(w, x)
    if len(candidates) != 1:
        return None
    args, is_operator = candidates[0]
    return tuple(arg.id if isinstance(arg, ast.Name) else None for arg in args), is_operator


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _is_module(value: ast.expr) -> bool:
    if isinstance(value, ast.Name):
        return value.id in _FUNCTION_MODULES
    return isinstance(value, ast.Attribute) and value.attr in _FUNCTION_MODULES
