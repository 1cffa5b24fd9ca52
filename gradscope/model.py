"""The plain data model of a trace: what capture produces and everything else reads.

Nothing here imports torch. A trace saved as JSON (gradscope.traceio) loads back into these same classes,
so renderers and diagnostics work on a saved trace exactly as on a live one.

Shape of a trace::

    Trace
      passes: [Pass]           one per backward / autograd.grad call, in order
        graph: Graph           the autograd graph as it stood when backward started
          nodes: [Node]        "op" nodes (grad_fns) and "leaf" nodes (tensors that get .grad)
          edges: [Edge]        input -> consumer, with the gradient that flowed back along it
      events: [Event]          what happened between passes (optimizer steps, in-place edits, ...)
      diagnostics: [Diagnostic]
"""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .events import EventData, event_data

FORMAT = "gradscope-trace"


class TraceFormatError(ValueError):
    """A file that cannot be read as a gradscope trace. The message is one line for the user."""


@lru_cache(maxsize=4096)
def _file_name(path: str) -> str:
    """The last part of `path` (a graph's signature asks it of every node of every pass:
    a `Path` each time would dominate it)."""
    return Path(path).name


@dataclass
class Source:
    """A place in the user's code."""

    file: str
    line: int
    code: str = ""
    function: str = ""
    cell: int | None = None  # a notebook cell's execution count, n of In[n]; `file` is then a temp file

    @property
    def file_label(self) -> str:
        """`name.py`, or `cell [3]` for code typed into a notebook."""
        return f"cell [{self.cell}]" if self.cell is not None else _file_name(self.file)

    @property
    def short(self) -> str:
        """`name.py:12` (`cell [3], line 2` in a notebook), the form shown on graphs."""
        if self.cell is not None:
            return f"{self.file_label}, line {self.line}"
        return f"{self.file_label}:{self.line}"


@dataclass(slots=True)
class TensorSummary:
    """What gradscope keeps of a tensor: its statistics, and its values when it is small.

    `value` is a nested list (a plain number for a 0-d tensor) or None when the tensor
    was larger than the trace's value limit. `norm` is the 2-norm, `max_abs` the largest
    absolute value, `nan`/`inf` the number of NaN and infinite elements.
    """

    shape: list[int]
    dtype: str
    device: str = "cpu"
    norm: float | None = None
    max_abs: float | None = None
    mean: float | None = None
    nan: int = 0
    inf: int = 0
    value: Any = None
    # False for large tensors on an accelerator: `nan`/`inf` then say whether such elements
    # are present (1) or not (0), without counting them (counting costs kernels per edge)
    counts_exact: bool = True

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def finite(self) -> bool:
        return self.nan == 0 and self.inf == 0

    def scalar(self) -> float | None:
        """The single number this tensor holds, when it holds exactly one, else None."""
        number: float | None = single_number(self.value)
        return number


def single_number(value: Any) -> Any:
    """The one number a value holds (`[[0.12]]` -> 0.12; a bool stays a bool), else None."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value if isinstance(value, (int, float, bool)) else None


@dataclass(slots=True)
class Node:
    """One node of an autograd graph.

    kind "op": a grad_fn (`grad_fn="MulBackward0"`, forward `op="mul"`), with the user's
    source line that ran the forward op and the module path when inside an nn.Module.
    kind "leaf": a tensor that requires grad and has no grad_fn (`grad_fn="AccumulateGrad"`),
    with its value when small and its `.grad` before and after the pass.
    """

    id: str
    kind: str
    name: str
    grad_fn: str
    op: str | None = None
    source: Source | None = None
    module: str | None = None
    module_call: int | None = None  # which call of `module` in this pass made it (0, 1, ...)
    shape: list[int] | None = None
    dtype: str | None = None
    device: str | None = None
    requires_grad: bool = True
    # leaves
    is_parameter: bool = False
    value: Any = None  # leaves, and roots (a loss): the tensor's value when small
    value_norm: float | None = None  # leaves: the 2-norm of the value at this pass, whatever its size
    grad_before: TensorSummary | None = None
    grad_after: TensorSummary | None = None
    # .grad before this pass was exactly what the previous pass left (not zeroed, not replaced)
    grad_carried_over: bool = False
    # roots: the tensors backward started from, with the gradient they were seeded with
    is_root: bool = False
    seed: TensorSummary | None = None
    # gradients that arrived at this node during the pass, one per forward output
    # (None for an output that received no gradient)
    grad_outputs: list[TensorSummary | None] = field(default_factory=list)
    # nodes that a create_graph=True backward built: `created_by` names the op whose
    # backward made them (e.g. "pow at lesson.py:3")
    created_by_backward: bool = False
    created_by: str | None = None
    # small numbers a node saved for its backward (`exponent`, `other`, a one-number `self`):
    # recorded for nodes that a create_graph backward built, whose forward no line shows
    saved: dict[str, Any] | None = None

    @property
    def grad(self) -> TensorSummary | None:
        """The gradient that arrived at this node (its first output's)."""
        for g in self.grad_outputs:
            if g is not None:
                return g
        return None

    @property
    def label(self) -> str:
        """The short text that identifies this node to a person: its name, else its op."""
        return self.name or self.op or self.grad_fn


_NODE_FIELDS = operator.attrgetter(*(f.name for f in fields(Node)))


@dataclass(slots=True)
class Edge:
    """Input `src` feeds consumer `dst` as its `index`-th input (grad_fn.next_functions[index]).

    During backward the gradient flows the other way: `grad` is what `dst` sent to `src`,
    `local` the local derivative d dst / d src (a number for scalars, a nested list Jacobian
    with one row per element of dst's output, or None when not computed).
    """

    src: str
    dst: str
    index: int
    grad: TensorSummary | None = None
    local: Any = None


@dataclass
class ModuleCall:
    """One call of an nn.Module in a pass: the graph's module tree is a list of these,
    in the order the calls began, each pointing at the call that encloses it."""

    path: str  # dotted path from the largest module seen ("" for that module itself)
    cls: str  # the module's class name
    call: int  # which call of this path in the pass (0, 1, ...): Node.module_call
    parent: int | None = None  # the enclosing call's place in Graph.module_calls
    parameters: list[str] = field(default_factory=list)  # full names of the parameters it holds
    nodes: list[str] = field(default_factory=list)  # ids of the op nodes made in it (sub-calls too)


@dataclass
class Graph:
    """An autograd graph: op and leaf nodes, and the edges between them."""

    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    module_calls: list[ModuleCall] = field(default_factory=list)  # the pass's module tree

    def node(self, node_id: str) -> Node:
        """The node with this id (a scan: a caller that looks up many builds its own index)."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def find(self, name: str) -> Node:
        """The node named `name` (a tensor name such as "w" or "features.weight")."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}; names: {sorted(n.name for n in self.nodes)}")

    def edge(self, src: str, dst: str) -> Edge:
        """The edge from node (or name) `src` into node (or name) `dst`."""
        src_id, dst_id = self._id(src), self._id(dst)
        for e in self.edges:
            if e.src == src_id and e.dst == dst_id:
                return e
        raise KeyError(f"no edge {src} -> {dst}")

    def _id(self, key: str) -> str:
        if any(n.id == key for n in self.nodes):
            return key
        return self.find(key).id

    @property
    def roots(self) -> list[Node]:
        return [n for n in self.nodes if n.is_root]

    @property
    def leaves(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "leaf"]

    def inputs_of(self, node_id: str) -> list[Edge]:
        """Edges into `node_id`, ordered by input index."""
        return sorted((e for e in self.edges if e.dst == node_id), key=lambda e: e.index)

    def signature(self, memo: dict[int, str] | None = None) -> str:
        """A string equal for two graphs of the same structure (ops, sources, names, wiring).

        Training loops build the same graph every step; renderers draw one of each.
        `memo`: each node's and edge's part, by the object's id, for signing many graphs
        that share node and edge objects (a loop's repeated passes do): the caller keeps
        those objects alive while it uses the memo.
        """
        if memo is None:
            memo = {}
        parts = []
        for n in self.nodes:
            part = memo.get(id(n))
            if part is None:  # (what a pass's numbers change is no part of it: memo stays true)
                part = memo[id(n)] = f"{n.id}|{n.kind}|{n.grad_fn}|{n.name}|{n.source.short if n.source else ''}|{n.shape}"
            parts.append(part)
        for e in self.edges:
            part = memo.get(id(e))
            if part is None:
                part = memo[id(e)] = f"{e.src}>{e.dst}#{e.index}"
            parts.append(part)
        return "\n".join(parts)

    def to_networkx(self) -> Any:
        """A `networkx.DiGraph` with one node per graph node (attributes: the node's fields)
        and one edge per graph edge, directed input -> consumer (attributes: index, grad, local)."""
        import networkx as nx

        g = nx.DiGraph()
        for n in self.nodes:
            g.add_node(n.id, **_to_plain(n))
        for e in self.edges:
            g.add_edge(e.src, e.dst, index=e.index, grad=_to_plain(e.grad), local=e.local)
        return g

    def __repr__(self) -> str:  # short: a notebook keeps it as the output's text/plain
        return f"Graph({len(self.nodes)} nodes, {len(self.edges)} edges)"

    if TYPE_CHECKING:  # attached by gradscope.methods (the model imports no renderer)
        def _repr_svg_(self) -> str: ...

        def render(self, path: str | Path, depth: int | str | None = "auto", expand: tuple[str, ...] = (),
                   fold: bool = True, **options: Any) -> Path: ...


@dataclass(eq=False)
class RepeatLayout:
    """What the light passes of one graph share (capture/light.py records them): the
    graph's nodes as its first pass left them, and where a pass's own numbers go. Every
    field is shared by those passes, never edited."""

    nodes: list[Node]  # the template's nodes: a light pass's op nodes are these objects
    roots: list[int]  # places of the roots (a pass makes its own root nodes)
    valued: list[int]  # places of ops (not roots) that show a value: a pass's own node, without one
    leaves: list[int]  # places of the leaves, in the order of a pass's numbers
    leaf_nodes: list[Node]  # each leaf's node without numbers (a pass's are copies, with its own)
    grad_kinds: list[tuple[list[int], str, str]]  # each leaf's .grad shape, dtype, device
    own: list[tuple[int, int]]  # (place, its leaf's number, or -1 - its root's) of each leaf and root, ascending
    repeat: Repeat  # what capture tells the listeners of these passes


@dataclass(slots=True, eq=False)
class LightNumbers:
    """A light pass's own numbers, compactly: its graph's nodes are made from these when
    first read (`LazyGraph`), and the trace's listeners read them as they are."""

    layout: RepeatLayout
    roots: list[Node]  # the pass's root nodes (its loss and seed), in `layout.roots`' order
    # each leaf's .grad after the pass: its norm alone (of a tensor of the leaf's shape,
    # dtype and device), a summary, or None (no .grad)
    grads: list[float | TensorSummary | None]
    values: list[Any] | None = None  # each leaf's value (None where too big); None: no leaf is small
    value_norms: list[float | None] | None = None  # each leaf's value norm, on the passes that read them

    def finite(self) -> bool:
        """Is every leaf's `.grad` free of NaN and Inf? (A norm alone is of a finite one.)"""
        return not any(type(g) is TensorSummary and not g.finite for g in self.grads)

    def grad(self, i: int) -> TensorSummary | None:
        """Leaf `i`'s `.grad` summary (as its node's `grad_after`)."""
        g = self.grads[i]
        if type(g) is float:
            shape, dtype, device = self.layout.grad_kinds[i]
            return TensorSummary(shape=shape, dtype=dtype, device=device, norm=g)
        return g  # type: ignore[return-value]

    def leaf(self, i: int) -> Node:
        """A node of leaf `i` with this pass's numbers."""
        node = copy_node(self.layout.leaf_nodes[i])
        if self.values is not None:
            node.value = self.values[i]
        if self.value_norms is not None:
            node.value_norm = self.value_norms[i]
        node.grad_after = self.grad(i)
        return node

    def nodes(self) -> list[Node]:
        """The pass's nodes: the template's, but its own roots, leaves and valued ops."""
        layout = self.layout
        nodes = list(layout.nodes)
        for k, root in zip(layout.roots, self.roots):
            nodes[k] = root
        for k in layout.valued:
            node = nodes[k] = copy_node(layout.nodes[k])
            node.value = None
        for i, k in enumerate(layout.leaves):
            nodes[k] = self.leaf(i)
        return nodes


class LazyGraph(Graph):
    """A light pass's graph: its `nodes` are made from its `numbers` when first read (a
    long run's passes are mostly written and summed up, never read node by node)."""

    def __init__(self, numbers: LightNumbers, edges: list[Edge], module_calls: list[ModuleCall]) -> None:
        self.numbers = numbers
        self._nodes: list[Node] | None = None  # (made the first time `nodes` is read)
        self._template_edges = edges  # (the template's list: a pass's own copy is made when read)
        self._edges: list[Edge] | None = None
        self.module_calls = module_calls

    @property
    def nodes(self) -> list[Node]:
        if self._nodes is None:
            self._nodes = self.numbers.nodes()
        return self._nodes

    @nodes.setter
    def nodes(self, nodes: list[Node]) -> None:
        self._nodes = nodes

    @property
    def edges(self) -> list[Edge]:
        if self._edges is None:
            self._edges = list(self._template_edges)
        return self._edges

    @edges.setter
    def edges(self, edges: list[Edge]) -> None:
        self._edges = edges

    @property
    def made(self) -> bool:
        """Have its nodes been made (read) yet?"""
        return self._nodes is not None

    @property
    def roots(self) -> list[Node]:
        # (the pass's own root nodes, in place order: the graph's roots, without making it)
        return list(self.numbers.roots) if self._nodes is None else super().roots

    def __eq__(self, other: object) -> bool:  # (as a Graph's: by fields, whatever the class)
        if not isinstance(other, Graph):
            return NotImplemented
        return (self.nodes, self.edges, self.module_calls) == (other.nodes, other.edges, other.module_calls)



@dataclass
class Pass:
    """One backward pass: a `Tensor.backward`, `torch.autograd.backward` or `torch.autograd.grad` call."""

    index: int
    api: str  # "Tensor.backward" | "torch.autograd.backward" | "torch.autograd.grad"
    graph: Graph
    source: Source | None = None  # the user's line that called backward
    retain_graph: bool = False
    create_graph: bool = False
    step: int = 0  # optimizer steps taken before this pass
    # edge gradients and local derivatives recorded on this pass (a training loop's repeats
    # of one graph record them on a sample of passes; leaves' .grad on every pass)
    edge_gradients: bool = True
    inputs: list[str] = field(default_factory=list)  # node ids of `inputs=` (grad / backward)
    results: list[TensorSummary | None] = field(default_factory=list)  # what autograd.grad returned
    error: str | None = None  # the exception backward raised, as "Type: message"

    @property
    def kind(self) -> str:
        return "grad" if self.api == "torch.autograd.grad" else "backward"

    if TYPE_CHECKING:  # attached by gradscope.methods
        def _repr_html_(self) -> str: ...

    def __repr__(self) -> str:
        return f"Pass({self.index}, {self.api}, {self.graph!r})"


@dataclass(frozen=True)
class Repeat:
    """How a finished pass repeats an earlier graph: what capture tells the trace's pass
    listeners (no part of the trace) so that they can skip what they worked out before.

    Every pass told with the same `template` number has the same graph structure (nodes'
    descriptions, edges, module calls) and shares all its `Node` and `Edge` objects but
    the nodes at the places `own` (its roots, leaves and valued ops, which carry its
    numbers); only those nodes carry numbers, and no edge does.
    """

    template: int  # unique in the process
    own: tuple[int, ...]  # places in graph.nodes, ascending


@dataclass
class Event:
    """Something capture saw between passes that diagnostics may need.

    `data` is the kind's typed record (`gradscope.events`: `LeafUpdate`, `OptimizerStep`,
    `SavedTensorModified`, ...), which also reads like the plain dict trace.json holds
    (`event.data["leaf"]`). A plain dict given as `data` becomes the kind's record.
    """

    kind: str
    source: Source | None = None
    pass_index: int | None = None  # the number of passes recorded before this event
    data: EventData = field(default_factory=dict)  # type: ignore[assignment]  # (made a record below)
    graph: Graph | None = None  # the graph as it stood, for events that happen outside a pass

    def __post_init__(self) -> None:
        if not isinstance(self.data, EventData):
            self.data = event_data(self.kind, self.data)
        elif self.data.kind != self.kind:
            raise ValueError(f"a {self.kind!r} event cannot hold a {type(self.data).__name__} record")


@dataclass
class Diagnostic:
    """An autograd mistake found in a trace, explained."""

    code: str
    severity: str  # "error" | "warning" | "info"
    title: str
    message: str
    hint: str = ""
    sources: list[Source] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    pass_index: int | None = None
    # a mistake found outside any pass (a leaf edited in place before backward): the index
    # in Trace.events of the event whose graph (Event.graph) `nodes` refer to
    event_index: int | None = None


@dataclass
class Trace:
    """Everything recorded by one `gradscope.trace()` block or `gradscope trace` run."""

    passes: list[Pass] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    if TYPE_CHECKING:  # saving, loading and drawing: attached by gradscope.methods
        def to_dict(self) -> dict[str, Any]: ...

        def save(self, path: str | Path) -> Path: ...

        @classmethod
        def from_dict(cls, data: Any) -> "Trace": ...

        def render(self, path: str | Path, pass_index: int = -1, depth: int | str | None = "auto",
                   expand: tuple[str, ...] = (), fold: bool = True, **options: Any) -> Path: ...

        def _repr_html_(self) -> str: ...

    def __repr__(self) -> str:  # a loaded trace's full repr would be megabytes of text/plain
        script = self.meta.get("script")
        of = f" of {Path(str(script)).name}" if script else ""
        n, d = len(self.passes), len(self.diagnostics)
        return f"Trace({n} pass{'es' if n != 1 else ''}, {d} diagnostic{'s' if d != 1 else ''}{of})"


if TYPE_CHECKING:
    def load(path: str | Path) -> Trace: ...  # attached by gradscope.methods


# -- plain-data conversion ---------------------------------------------------------------
def copy_node(node: Node) -> Node:
    """A shallow copy of a node, made by its constructor (`copy.copy` of a slotted record
    goes through pickling's protocol: several times slower, on every pass)."""
    return Node(*_NODE_FIELDS(node))


def _to_plain(obj: Any) -> Any:
    if obj is None:
        return None
    return asdict(obj) if hasattr(obj, "__dataclass_fields__") else obj
