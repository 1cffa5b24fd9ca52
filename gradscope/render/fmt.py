"""Short text for numbers, tensors and user strings, shared by every renderer.

Graphs and reports show numbers the way a person writes them: `2`, `0.25`, `1.3e-2`,
and a big tensor as its shape and norm, `[256,512] ‖g‖=1.3e-2`.
"""

from __future__ import annotations

import html
import io
import math
import re
import tokenize
from typing import Any

from ..model import Diagnostic, TensorSummary

# Characters XML 1.0 forbids (and Graphviz's HTML-label parser chokes on).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
# The most values shown inline for a small tensor or Jacobian.
SMALL = 4


def esc(text: Any, limit: int | None = None) -> str:
    """`text` made safe for HTML, SVG and Graphviz HTML-like labels.

    Control characters are dropped (they are invalid XML), line breaks become spaces,
    and text longer than `limit` is cut with an ellipsis before escaping.
    """
    s = plain(text)
    if limit is not None and len(s) > limit:
        s = s[: max(limit - 1, 1)] + "…"
    return html.escape(s, quote=True)


def plain(text: Any) -> str:
    """`text` on one line, without the control characters XML forbids (not HTML-escaped)."""
    return _CONTROL.sub("", str(text)).replace("\r", " ").replace("\n", " ").replace("\t", " ")


def code(line: str) -> str:
    """A source line without its trailing comment: `y = a * b  # = 6` -> `y = a * b`.

    Tokenized, so a `#` inside a string stays; a line that does not tokenize alone
    (part of a multi-line statement) is kept whole.
    """
    line = line.strip()
    if "#" not in line:
        return line
    try:
        for tok in tokenize.generate_tokens(io.StringIO(line).readline):
            if tok.type == tokenize.COMMENT:
                return line[: tok.start[1]].rstrip() or line
    except (tokenize.TokenError, SyntaxError):
        pass
    return line


def num(x: Any) -> str:
    """A number as a person writes it: `2`, `0.25`, `1.3e-2`, `-inf`, `nan`."""
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    if not isinstance(x, float):
        return str(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    text = f"{x:.3g}"
    if "e" in text:  # 1.3e-05 -> 1.3e-5: shorter on an edge label
        mantissa, exp = text.split("e")
        text = f"{mantissa}e{int(exp)}"
    return text


def shape(dims: list[int] | None) -> str:
    """`[256,512]`; a 0-d tensor is `[]`."""
    return "[" + ",".join(str(d) for d in (dims or [])) + "]"


def nested(value: Any) -> str:
    """A nested list of numbers as `[1, 2]` / `[[1, 0], [0, 1]]`."""
    if isinstance(value, list):
        return "[" + ", ".join(nested(v) for v in value) + "]"
    return num(value)


def _count(value: Any) -> int:
    if isinstance(value, list):
        return sum(_count(v) for v in value)
    return 1


def _dims(value: Any) -> list[int]:
    dims = []
    while isinstance(value, list):
        dims.append(len(value))
        value = value[0] if value else None
    return dims


def tensor(t: TensorSummary | None, symbol: str = "g") -> str:
    """A tensor summary in a few characters: its value when small, else shape and norm.

    `symbol` names the tensor in the norm (`‖g‖` for gradients). NaN/inf counts are
    always shown, since they are usually why someone is looking.
    """
    if t is None:
        return "None"
    scalar = t.scalar()
    if scalar is not None:
        text = num(scalar)
    elif t.value is not None and _count(t.value) <= SMALL:
        text = nested(t.value)
    elif t.norm is not None:
        text = f"{shape(t.shape)} ‖{symbol}‖={num(t.norm)}"
    else:
        text = shape(t.shape)
    bad = ", ".join(f"{n} {what}" for n, what in ((t.nan, "nan"), (t.inf, "inf")) if n)
    return f"{text} ({bad})" if bad else text


def value(v: Any) -> str | None:
    """A leaf's value when it is small enough to show, else None."""
    while isinstance(v, list) and len(v) == 1:
        v = v[0]
    if v is None:
        return None
    if isinstance(v, list):
        return nested(v) if _count(v) <= SMALL else None
    return num(v)


def local(v: Any) -> str | None:
    """A local derivative: a number, a small Jacobian inline, a big one as its size."""
    if v is None:
        return None
    if not isinstance(v, list):
        return num(v)
    while isinstance(v, list) and len(v) == 1 and isinstance(v[0], list):
        v = v[0]
    if _count(v) <= SMALL:
        return nested(v if not (isinstance(v, list) and len(v) == 1) else v[0])
    return "J " + "×".join(str(d) for d in _dims(v))


def norm(t: TensorSummary | None) -> float | None:
    """The number a plot shows for a gradient: its value when scalar, else its norm."""
    if t is None:
        return None
    s = t.scalar()
    if isinstance(s, (int, float)) and not isinstance(s, bool):
        return float(s)
    return t.norm


def lines_of(d: Diagnostic) -> str:
    """Where a diagnostic points, `x.py:4`; for a modified saved tensor both of its lines,
    the saving one first: `saved at x.py:4, modified at x.py:6`."""
    if not d.sources:
        return ""
    if d.code == "saved-tensor-modified" and len(d.sources) > 1:
        return f"saved at {d.sources[0].short}, modified at {d.sources[1].short}"
    return d.sources[0].short
