"""gradscope: see how PyTorch autograd gets its numbers.

    import gradscope
    with gradscope.trace() as t:
        ...  # any PyTorch code; every backward inside is recorded
    t.passes[0].graph.find("w").grad_after   # the gradient w received
    t.save("trace.json"); t.render("graph.svg")

`gradscope.graph(*tensors)` gives the graph behind tensors without running backward,
`gradscope.load(path)` reads a saved trace, `gradscope.name(tensor, "w")` names a tensor.
"""

from typing import Any

from . import methods  # noqa: F401  (the model's methods that save, load and draw: first, so gradscope.model has them)
from .methods import load
from .model import (
    Diagnostic,
    Edge,
    Event,
    Graph,
    Node,
    Pass,
    Source,
    TensorSummary,
    Trace,
    TraceFormatError,
)
from .version import __version__

_API = ("trace", "graph", "name")


def __getattr__(attr: str) -> Any:
    # torch is imported on first use of the tracing API, so loading and rendering a saved
    # trace (and `gradscope --help`) never pay for it.
    if attr in _API:
        from . import api

        return getattr(api, attr)
    raise AttributeError(f"module 'gradscope' has no attribute {attr!r}")

__all__ = [
    "trace", "graph", "load", "name",
    "Trace", "Pass", "Graph", "Node", "Edge", "Event", "Diagnostic", "Source", "TensorSummary",
    "TraceFormatError", "__version__",
]
