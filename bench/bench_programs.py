"""Programs whose graph changes every step, end to end: `gradscope trace` vs `python`.

    python bench/bench_programs.py            # both programs, 1 run each
    python bench/bench_programs.py --runs 3   # the median of 3 runs each
    python bench/bench_programs.py --only "unrolled LSTM"

Two programs shaped like PyTorch's examples that broke gradscope's drawing (issue 19):
- actor-critic: a policy-gradient loop on its own small environment (no gym); each
  episode has its own length, so each builds a graph of its own (40 episodes, one
  backward each);
- unrolled LSTM: the time-sequence-prediction example's model (two LSTMCells of 51
  units unrolled over 99 steps, batch 97, then a linear), 3 training steps with Adam.

Each is run as `python prog.py` and as `gradscope trace -o out prog.py` (default options,
default layout budget), one after the other in the same run; the table gives the wall
time of each, their ratio, gradscope's exit code, and what it drew (SVG files, the
summary's first line).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ACTOR_CRITIC = """\
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)


class Walk:
    # A 1-D walk: push left or right; the episode ends off the edges or after 60 steps.
    def reset(self):
        self.x, self.t = 0.0, 0
        return self.obs()

    def obs(self):
        return torch.tensor([self.x, self.x * self.x, self.t / 60.0, 1.0])

    def step(self, action):
        self.x += (0.4 if action == 1 else -0.4) + float(torch.randn(()) * 0.3)
        self.t += 1
        done = abs(self.x) > 2.0 or self.t >= 60
        return self.obs(), 1.0 - abs(self.x) / 2.0, done


class Policy(nn.Module):
    def __init__(self):
        super().__init__()
        self.affine = nn.Linear(4, 64)
        self.action_head = nn.Linear(64, 2)
        self.value_head = nn.Linear(64, 1)

    def forward(self, x):
        x = F.relu(self.affine(x))
        return F.softmax(self.action_head(x), dim=-1), self.value_head(x)


model = Policy()
opt = torch.optim.Adam(model.parameters(), lr=3e-2)
env = Walk()
lengths = []
for episode in range(40):
    state, saved, rewards = env.reset(), [], []
    done = False
    while not done:
        probs, value = model(state)
        m = torch.distributions.Categorical(probs)
        action = m.sample()
        saved.append((m.log_prob(action), value))
        state, reward, done = env.step(action.item())
        rewards.append(reward)
    returns, R = [], 0.0
    for r in reversed(rewards):
        R = r + 0.99 * R
        returns.insert(0, R)
    returns = torch.tensor(returns)
    returns = (returns - returns.mean()) / (returns.std() + 1e-6) if len(returns) > 1 else returns
    policy_losses, value_losses = [], []
    for (log_prob, value), R in zip(saved, returns):
        advantage = R - value.item()
        policy_losses.append(-log_prob * advantage)
        value_losses.append(F.smooth_l1_loss(value, torch.tensor([R])))
    opt.zero_grad()
    loss = torch.stack(policy_losses).sum() + torch.stack(value_losses).sum()
    loss.backward()
    opt.step()
    lengths.append(len(rewards))
print("episodes", len(lengths), "lengths", min(lengths), "-", max(lengths), "distinct", len(set(lengths)))
"""

LSTM = """\
import torch
import torch.nn as nn

torch.manual_seed(0)


class Sequence(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm1 = nn.LSTMCell(1, 51)
        self.lstm2 = nn.LSTMCell(51, 51)
        self.linear = nn.Linear(51, 1)

    def forward(self, input):
        outputs = []
        h_t = torch.zeros(input.size(0), 51)
        c_t = torch.zeros(input.size(0), 51)
        h_t2 = torch.zeros(input.size(0), 51)
        c_t2 = torch.zeros(input.size(0), 51)
        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            outputs.append(self.linear(h_t2))
        return torch.cat(outputs, dim=1)


t = torch.arange(100).float()
data = torch.sin((t[None, :] + torch.randint(-80, 80, (97, 1))) / 20.0)
x, y = data[:, :-1], data[:, 1:]
model = Sequence()
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for step in range(3):
    opt.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    print("step", step, "loss", round(loss.item(), 5))
"""

PROGRAMS = {"actor-critic": ACTOR_CRITIC, "unrolled LSTM": LSTM}


def timed(cmd: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    return time.perf_counter() - start, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--only", choices=sorted(PROGRAMS), help="run this program only")
    args = parser.parse_args()
    print(f"{'program':<14} {'python':>8} {'gradscope':>10} {'ratio':>6}  exit  drawn  summary")
    for name, source in PROGRAMS.items():
        if args.only and name != args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "prog.py").write_text(textwrap.dedent(source))
            plain, traced, last = [], [], None
            for _ in range(args.runs):
                seconds, done = timed([sys.executable, "prog.py"], folder)
                assert done.returncode == 0, done.stderr
                plain.append(seconds)
                seconds, last = timed([sys.executable, "-m", "gradscope.cli", "trace", "-o", "out", "prog.py"], folder)
                traced.append(seconds)
            p, g = statistics.median(plain), statistics.median(traced)
            svgs = len(list((folder / "out").glob("*.svg")))
            first = next((line for line in last.stderr.splitlines() if line.startswith("gradscope: traced")), "?")
            print(f"{name:<14} {p:>7.1f}s {g:>9.1f}s {g / p:>5.1f}x  {last.returncode:>4}  {svgs:>5}  {first}")
            for line in last.stderr.splitlines():
                if "not drawn" in line or "did not finish" in line:
                    print(f"{'':<14} {line[:160]}")


if __name__ == "__main__":
    main()
