"""The lesson's first graph: y = (x + w) * (w + 1), and how backward gets dy/dw = 5.

Autograd records every operation on tensors that require grad as a node of a graph.
`backward()` walks that graph from y back to the leaves, multiplying local derivatives
along each path (the chain rule) and adding up the paths that meet at the same leaf:

    dy/dw = dy/da * da/dw + dy/db * db/dw
          =   b   *   1   +   a   *   1
          = (w + 1) + (x + w) = 2 + 3 = 5

Run it:  python examples/backward.py            -> tensor([5.])
Trace it: gradscope trace examples/backward.py  -> the graph with every gradient on it
"""

import torch

# Leaves: tensors we create ourselves. requires_grad=True asks autograd to
# record what is computed from them and to fill in their .grad during backward.
w = torch.tensor([1.], requires_grad=True)
x = torch.tensor([2.], requires_grad=True)

# The forward pass. Each operation adds a node (a grad_fn) to the graph.
a = torch.add(w, x)  # a = w + x = 3   (da/dw = 1, da/dx = 1)
b = torch.add(w, 1)  # b = w + 1 = 2   (db/dw = 1)
y = torch.mul(a, b)  # y = a * b = 6   (dy/da = b = 2, dy/db = a = 3)

# The backward pass. It starts at y with dy/dy = 1 and sends gradients back
# along every edge. w is reached twice (through a and through b); the two
# contributions add up: 2 * 1 + 3 * 1 = 5.
# retain_graph=True keeps the graph's saved tensors, so backward could run again.
y.backward(retain_graph=True)

print(w.grad)  # tensor([5.])
