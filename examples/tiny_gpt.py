"""A tiny GPT-shaped decoder learns to spell one sentence: a real model's graph, readable.

Four transformer blocks (layer norm, causal self-attention written out, MLP, residual
adds), token and position embeddings, and a head that predicts the next character.
Forty Adam steps on "gradients flow backward through every block" bring the loss from
about 3.2 to under 0.01. Under `gradscope trace`, the picture of the step draws the
embeddings and the head op by op, and block 0 once, marked ×4, with each block's
gradient norm; `--depth 0` in `gradscope render` shows the model as six boxes.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int = 50, d: int = 32, heads: int = 4, blocks: int = 4, context: int = 16) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(context, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(blocks))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1])
        x = self.tok(idx) + self.pos(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()

    torch.manual_seed(0)
    text = "gradients flow backward through every block"
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text])
    inputs, targets = data[:-1].unsqueeze(0), data[1:].unsqueeze(0)  # predict the next character
    model = GPT(vocab=len(chars), d=32, heads=4, blocks=4, context=len(text))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(args.steps):
        logits = model(inputs)
        loss = F.cross_entropy(logits.view(-1, len(chars)), targets.view(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step in (0, args.steps - 1):
            print(f"step {step}: loss {loss.item():.3f}")
