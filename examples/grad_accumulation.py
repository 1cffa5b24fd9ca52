"""Gradients accumulate: without w.grad.zero_() each backward adds to .grad (5, 10, 15, 20).

backward() does not overwrite a leaf's .grad, it adds to it. That is what lets several
backward calls (or several losses) contribute to one update, and it is why training
loops call optimizer.zero_grad() every step. Forget it and the gradient grows step by
step: 5, 10, 15, 20. Run with --zero-grad to clear it after each step: 5, 5, 5, 5.
"""

import argparse

import torch

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--zero-grad", action="store_true", help="clear w.grad and x.grad after each backward")
args = parser.parse_args()

w = torch.tensor([1.], requires_grad=True)
x = torch.tensor([2.], requires_grad=True)

for step in range(4):
    # A fresh graph every step: the same y = (x + w) * (w + 1), dy/dw = 5.
    a = torch.add(w, x)
    b = torch.add(w, 1)
    y = torch.mul(a, b)

    y.backward()  # adds 5 to whatever w.grad already holds
    print(w.grad)

    if args.zero_grad:
        # In place (the trailing underscore means "modify this tensor"). Clear every
        # leaf, not only the one printed: x.grad would go on piling up 2, 4, 6, 8.
        w.grad.zero_()
        x.grad.zero_()
