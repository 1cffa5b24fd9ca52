"""The explorer in report.html: each distinct graph as data the page lays out on demand.

Python emits, per graph, a compact JSON of its nodes, edges, module tree and numbers
(`data.py`), with the default view that `render(depth="auto")` draws (which module calls
start open, which runs of calls are folded ×N: collapse.py decides, not the browser).
The page turns the state it is in (what is open, what is selected) into DOT (`view.js`)
and lays it out with Graphviz compiled to WebAssembly (`vendor/graphviz.js`, built by
scripts/vendor_explorer.sh), so only what is shown is laid out, when it is shown;
`explorer.js` draws it, zooms, answers clicks and keys, and keeps the URL fragment;
`panel.js` is the details panel.
"""

from .page import explorer_scripts, explorer_section, explorer_style

__all__ = ["explorer_scripts", "explorer_section", "explorer_style"]
