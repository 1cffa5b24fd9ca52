"""Op calls with several outputs (nn.GRU, nn.LSTM, torch.split...): every autograd node the
call made inside torch's kernels belongs to that call, whichever output was made first."""

import torch
import torch.nn as nn

import gradscope


class _Recurrent(nn.Module):
    def __init__(self, cell: type) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.rnn = cell(8, 16, num_layers=2, batch_first=True)
        self.head = nn.Linear(16, 20)

    def forward(self, x):
        out, _ = self.rnn(self.emb(x))  # line of the recurrent call
        return self.head(out)


def _last_graph(cell: type):
    torch.manual_seed(0)
    model = _Recurrent(cell)
    x = torch.randint(0, 20, (4, 6))
    with gradscope.trace() as t:
        model(x).logsumexp(-1).mean().backward()
    return t.passes[-1].graph


def _ops(graph):
    return [n for n in graph.nodes if n.kind == "op"]


def test_every_node_of_a_gru_call_has_the_users_line_and_module():
    ops = _ops(_last_graph(nn.GRU))
    inside = [n for n in ops if n.module == "rnn"]
    assert len(inside) > 100  # the GRU's gates over 6 steps and 2 layers, not just its outputs
    assert all(n.source is not None for n in ops)
    lines = {n.source.line for n in inside}
    assert lines == {_Recurrent.forward.__code__.co_firstlineno + 1}
    assert sorted(n.op for n in ops if n.module is None) == ["logsumexp", "mean"]  # the loss, outside the model


def test_every_node_of_an_lstm_call_belongs_to_it():
    ops = _ops(_last_graph(nn.LSTM))
    assert all(n.source is not None for n in ops)
    assert sorted(n.op for n in ops if n.module is None) == ["logsumexp", "mean"]
    inside = [n for n in ops if n.module == "rnn"]  # (CPU LSTMs use fused cells: few nodes)
    assert inside and {n.source.line for n in inside} == {_Recurrent.forward.__code__.co_firstlineno + 1}
