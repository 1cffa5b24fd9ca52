"""gradscope: see how PyTorch autograd gets its numbers.

    import gradscope
    with gradscope.trace() as t:
        ...  # any PyTorch code; every backward inside is recorded
    t.passes[0].graph.find("w").grad_after   # the gradient w received
    t.save("trace.json"); t.render("graph.svg")

`gradscope.graph(*tensors)` gives the graph behind tensors without running backward,
`gradscope.load(path)` reads a saved trace, `gradscope.name(tensor, "w")` names a tensor.
"""

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
    load,
)
from .api import graph, name, trace

__version__ = "0.1.0"

__all__ = [
    "trace", "graph", "load", "name",
    "Trace", "Pass", "Graph", "Node", "Edge", "Event", "Diagnostic", "Source", "TensorSummary",
    "TraceFormatError", "__version__",
]
