"""requires_grad spreads: anything computed from a leaf that requires grad requires grad too.

Only w and x are created with requires_grad=True; a, b and y inherit it because they
depend on them, so autograd records their grad_fns without being asked. No backward
runs here: `gradscope trace` draws the graph as it stands when the script reads
`.requires_grad`, with each node's requires_grad and the inputs it came from.
"""

import torch

w = torch.tensor([1.], requires_grad=True)
x = torch.tensor([2.], requires_grad=True)

a = torch.add(w, x)
b = torch.add(w, 1)
y = torch.mul(a, b)

print(a.requires_grad, b.requires_grad, y.requires_grad)  # True True True
