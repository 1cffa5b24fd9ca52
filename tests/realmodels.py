"""Real models for the module-structure and collapsed-view tests: a GPT-shaped decoder
with its own attention (the tiny_gpt showcase's), a small ResNet, and a model with a
module called twice and a submodule called directly. Small sizes: the structure is what
the tests look at."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from gradscope.examples.tiny_gpt import GPT

__all__ = ["GPT", "gpt_step", "ResNet", "SharedActivation", "Net", "encoder"]


def gpt_step(model: GPT, vocab: int = 50, batch: int = 2, t: int = 8) -> torch.Tensor:
    """One training step's loss (cross-entropy over random tokens), backward called."""
    torch.manual_seed(0)
    idx = torch.randint(vocab, (batch, t))
    logits = model(idx)
    loss = F.cross_entropy(logits.view(-1, vocab), idx.view(-1))
    loss.backward()
    return loss


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, c: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, 4 * c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * c)
        self.relu = nn.ReLU()
        self.down = None
        if stride != 1 or c_in != 4 * c:
            self.down = nn.Sequential(nn.Conv2d(c_in, 4 * c, 1, stride, bias=False), nn.BatchNorm2d(4 * c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    """ResNet-50's shape with `layers=(3, 4, 6, 3)` and `width=64`."""

    def __init__(self, layers=(2, 2), width: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        stages, c_in = [], width
        for i, n in enumerate(layers):
            c = width * 2 ** i
            blocks = [Bottleneck(c_in, c, 1 if i == 0 else 2)]
            blocks += [Bottleneck(4 * c, c) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = 4 * c
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


class SharedActivation(nn.Module):
    """`self.act` is called twice per forward: two module calls, two groups."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.act = nn.Tanh()
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc2(self.act(self.fc1(x))))


class Net(nn.Module):
    """`net.backbone(x)` is called directly in the tests."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def encoder(layers: int = 2, d: int = 16) -> nn.TransformerEncoder:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
