"""A leaf that requires grad cannot be modified in place: w.add_(1) raises a RuntimeError.

Backward needs the values the forward pass used: dy/da = b = w + 1 is computed from w.
Autograd keeps a reference to w, not a copy, so changing w in place before backward
would silently give a wrong gradient. PyTorch refuses the in-place edit of a leaf that
requires grad outright:

    RuntimeError: a leaf Variable that requires grad is being used in an in-place operation.

The error is left to propagate, as in the lesson: this script exits with status 1.
To change a parameter on purpose (as an optimizer does), do it under torch.no_grad().
"""

import torch

w = torch.tensor([1.], requires_grad=True)
x = torch.tensor([2.], requires_grad=True)

a = torch.add(w, x)
b = torch.add(w, 1)
y = torch.mul(a, b)

w.add_(1)  # in place on a leaf that requires grad: PyTorch raises here

y.backward()  # never reached
