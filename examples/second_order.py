"""Second derivatives: autograd.grad with create_graph=True differentiates y = x**2 twice.

torch.autograd.grad(outputs, inputs) returns the gradients instead of storing them in
.grad. With create_graph=True, backward itself is recorded as a graph: the result
dy/dx = 2x is a tensor with a grad_fn, so it can be differentiated again.

    y = x**2     dy/dx = 2x = 6 at x = 3     d2y/dx2 = 2
"""

import torch

x = torch.tensor([3.], requires_grad=True)
y = torch.pow(x, 2)  # y = x**2 = 9

# First derivative. create_graph=True records the backward computation itself
# (PowBackward0 computes grad * 2 * x with ordinary tensor ops), so grad_1 comes
# back with a grad_fn of its own, MulBackward0.
grad_1 = torch.autograd.grad(y, x, create_graph=True)  # dy/dx = 2x = 6
print(grad_1)  # (tensor([6.], grad_fn=<MulBackward0>),)

# Second derivative: differentiate the graph that the first backward built.
grad_2 = torch.autograd.grad(grad_1[0], x)  # d(2x)/dx = 2
print(grad_2)  # (tensor([2.]),)
