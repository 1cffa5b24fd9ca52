"""Backward from a vector: the `gradient` argument weights each output (5 * 1 + 2 * 2 = 9).

backward() needs a scalar to start from. When the root is a vector, you pass a tensor
of the same shape, `gradient=` (called grad_tensors in torch.autograd.backward): the
seed gradient of each element. Backward then computes the weighted sum

    d(1 * y0 + 2 * y1)/dw = 1 * dy0/dw + 2 * dy1/dw = 1 * 5 + 2 * 2 = 9

This is how several losses are combined with different weights in one backward.
"""

import torch

w = torch.tensor([1.], requires_grad=True)
x = torch.tensor([2.], requires_grad=True)

a = torch.add(w, x)  # a = x + w = 3
b = torch.add(w, 1)  # b = w + 1 = 2

y0 = torch.mul(a, b)  # y0 = (x + w) * (w + 1)   dy0/dw = a + b = 5
y1 = torch.add(a, b)  # y1 = (x + w) + (w + 1)   dy1/dw = 1 + 1 = 2

# Two outputs stacked into one vector [y0, y1]: not a scalar any more.
loss = torch.cat([y0, y1], dim=0)

# Seed y0 with 1 and y1 with 2: the gradient of 1 * y0 + 2 * y1.
grad_tensors = torch.tensor([1., 2.])
loss.backward(gradient=grad_tensors)

print(w.grad)  # tensor([9.])
