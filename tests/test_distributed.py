"""Distributed runs on CPU (gloo, localhost): each rank writes its own folder, rank 0 an
index linking them, and a diagnostic says where DDP ranks' gradients differ although
DDP promises them equal. Through the CLI under torchrun, and with gradscope.trace()
inside an mp.spawn script."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest
from conftest import ROOT
from test_cli import write

from gradscope.model import load

pytest.importorskip("torch.distributed")

DDP_STEPS = """\
import sys, torch
from torch.nn.parallel import DistributedDataParallel as DDP

def keep_local(state, bucket):  # a broken communication hook: it does not all-reduce
    fut = torch.futures.Future()
    fut.set_result(bucket.buffer())
    return fut

def train(rank, broken):
    torch.manual_seed(0)
    model = DDP(torch.nn.Linear(3, 2))
    if broken:
        model.register_comm_hook(None, keep_local)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.full((4, 3), float(rank + 1))  # each rank its own batch
    for _ in range(2):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    print(f"rank {rank} weight {model.module.weight.sum().item():.6f}", flush=True)
"""

UNDER_TORCHRUN = DDP_STEPS + """
import torch.distributed as dist
dist.init_process_group("gloo")
train(dist.get_rank(), "broken" in sys.argv)
dist.destroy_process_group()
"""

SPAWNED = DDP_STEPS + """
import os
import gradscope
import torch.distributed as dist
import torch.multiprocessing as mp

def work(rank, port, broken):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    with gradscope.trace(save="out/trace.json") as t:
        train(rank, broken)
    print(f"rank {rank} diagnostics {[d.code for d in t.diagnostics if d.code.startswith('ddp')]}", flush=True)
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(work, args=(int(sys.argv[1]), "broken" in sys.argv), nprocs=2)
"""


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_codes(path) -> list[tuple[str, int | None]]:
    return [(d.code, d.pass_index) for d in load(path).diagnostics if d.code.startswith("ddp")]


@pytest.mark.parametrize("broken", [False, True])
def test_torchrun_ranks_write_their_own_folders_and_rank_0_an_index(tmp_path, broken):
    write(tmp_path, "train.py", UNDER_TORCHRUN)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "gradscope.cli", "trace", "-o", "out", "train.py", *(["broken"] if broken else [])],
                       cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    weights = dict(re.findall(r"rank (\d) weight (-?\d+\.\d{6})", r.stdout))  # the ranks' lines may interleave
    assert sorted(weights) == ["0", "1"]
    out = tmp_path / "out"
    for rank in (0, 1):
        saved = load(out / f"rank-{rank}" / "trace.json")
        assert len(saved.passes) == 2 and saved.meta["exit_code"] == 0
        assert (out / f"rank-{rank}" / "report.html").exists() and (out / f"rank-{rank}" / "pass-000.svg").exists()
    assert not (out / "trace.json").exists()  # nothing shared that one rank could overwrite
    index = (out / "index.html").read_text()
    assert 'href="rank-0/report.html"' in index and 'href="rank-1/report.html"' in index
    assert _ddp_codes(out / "rank-1" / "trace.json") == []  # rank 0 compares
    if broken:  # each rank kept its own gradients: the weights part after the first step
        assert weights["0"] != weights["1"]
        assert _ddp_codes(out / "rank-0" / "trace.json") == [("ddp-gradients-differ", 0)]
        assert "ddp-gradients-differ" in index and "module.weight" in index
        assert "error   ddp-gradients-differ DDP ranks' gradients differ after all-reduce  train.py:18" in r.stderr
    else:
        assert weights["0"] == weights["1"]
        assert _ddp_codes(out / "rank-0" / "trace.json") == []
        assert "The ranks agree where DDP promises it." in index


def test_trace_inside_spawned_ranks_saves_one_folder_per_rank(tmp_path):
    """The broken case only: the CLI test shows that agreeing ranks give no diagnostic."""
    write(tmp_path, "spawned.py", SPAWNED)
    r = subprocess.run([sys.executable, "spawned.py", str(_free_port()), "broken"], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"index.html", "rank-0", "rank-1"}
    for rank in (0, 1):
        assert len(load(out / f"rank-{rank}" / "trace.json").passes) == 2
    assert "rank 0 diagnostics ['ddp-gradients-differ']" in r.stdout  # the user's own trace object has it
    assert "rank 1 diagnostics []" in r.stdout
    assert _ddp_codes(out / "rank-0" / "trace.json") == [("ddp-gradients-differ", 0)]
    index = (out / "index.html").read_text()
    assert 'href="rank-1/trace.json"' in index and "ddp-gradients-differ" in index
