"""torch's error messages that gradscope recognises, matched here and nowhere else.

Capture reads them from live exceptions, diagnostics from the messages saved in events;
both ask these functions, so a torch release that rewords a message is fixed in one place.
Plain strings only: no torch import.
"""

from __future__ import annotations

# a saved tensor was changed in place before backward needed it
MODIFIED_INPLACE = "modified by an inplace operation"
# backward ran into a graph an earlier backward freed
SECOND_TIME = "backward through the graph a second time"
_FREED = (SECOND_TIME, "after they have already been freed")
# an in-place op on a leaf that requires grad
LEAF_INPLACE = "a leaf Variable that requires grad"
# backward() without a gradient on a root with more than one element
NONSCALAR = "grad can be implicitly created only for scalar outputs"
# where torch's advice starts ("... modified by an inplace operation: [...]. Hint: enable anomaly ...")
HINT = ". Hint:"


def without_hint(message: str) -> str:
    """The message up to torch's own hint (gradscope gives its own)."""
    return message.split(HINT)[0]


def saved_tensor_modified(message: str) -> bool:
    return MODIFIED_INPLACE in message


def graph_freed(message: str) -> bool:
    """Any of torch's ways of saying a graph's saved tensors were freed."""
    return any(s in message for s in _FREED)


def backward_twice(message: str) -> bool:
    """The error of a second backward through a freed graph."""
    return SECOND_TIME in message


def leaf_inplace(message: str) -> bool:
    return LEAF_INPLACE in message


def nonscalar_backward(message: str) -> bool:
    return NONSCALAR in message
