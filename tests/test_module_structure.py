"""Every op node in its module call, with the user's line: real models built here."""

from __future__ import annotations

import torch

import gradscope
from realmodels import GPT, Net, ResNet, SharedActivation, encoder, gpt_step


def _ops(graph):
    return [n for n in graph.nodes if n.kind == "op"]


def _inside_model(graph):
    """Op nodes made inside the outermost module's call (the loss is outside it)."""
    top = graph.module_calls[0]
    assert top.path == "" and top.parent is None
    inside = set(top.nodes)
    return [n for n in _ops(graph) if n.id in inside]


def test_gpt_every_op_node_has_a_module_and_a_source():
    model = GPT(blocks=3)
    with gradscope.trace() as t:
        gpt_step(model)
    graph = t.passes[-1].graph
    ops, inside = _ops(graph), _inside_model(graph)
    assert len(inside) >= 90  # (the attention's views and a linear's transposes among them)
    assert sum(n.module is not None for n in inside) / len(inside) == 1.0
    assert sum(n.source is not None for n in ops) / len(ops) == 1.0
    # a linear's transpose belongs to that linear's call and line
    t_node = next(n for n in ops if n.grad_fn == "TBackward0" and n.module == "blocks.1.attn.qkv")
    assert t_node.source.code == "q, k, v = self.qkv(x).split(d, dim=2)"
    # cross-entropy's inner nodes point at the user's line, not at torch.nn.functional
    loss_nodes = [n for n in ops if n.grad_fn in ("NllLossBackward0", "LogSoftmaxBackward0")]
    assert len(loss_nodes) == 2
    assert {n.source.code for n in loss_nodes} == {"loss = F.cross_entropy(logits.view(-1, vocab), idx.view(-1))"}
    assert {n.source.file.rsplit("/", 1)[-1] for n in ops} == {"tiny_gpt.py", "realmodels.py"}


def test_transformer_encoder_ops_point_at_the_line_that_called_the_library():
    enc = encoder(layers=2)
    x = torch.randn(2, 5, 16)
    with gradscope.trace() as t:
        out = enc(x)
        out.sum().backward()
    graph = t.passes[-1].graph
    ops, inside = _ops(graph), _inside_model(graph)
    assert sum(n.module is not None for n in inside) / len(inside) == 1.0
    assert sum(n.source is not None for n in ops) / len(ops) == 1.0
    # every op inside torch.nn's encoder is given this file's line that called it
    assert {n.source.code for n in inside} == {"out = enc(x)"}
    # multi_head_attention_forward's internal nodes are in the attention's call
    attn = [n for n in inside if n.module == "layers.1.self_attn"]
    assert len(attn) >= 10


def test_module_called_twice_gives_two_calls():
    torch.manual_seed(0)
    model = SharedActivation()
    with gradscope.trace() as t:
        model(torch.randn(3, 4)).sum().backward()
    graph = t.passes[-1].graph
    tanh = sorted((n for n in graph.nodes if n.op == "tanh"), key=lambda n: n.module_call)
    assert [(n.module, n.module_call) for n in tanh] == [("act", 0), ("act", 1)]
    calls = [(c.path, c.call) for c in graph.module_calls]
    assert calls == [("", 0), ("fc1", 0), ("act", 0), ("fc2", 0), ("act", 1)]
    assert graph.module_calls[2].nodes != graph.module_calls[4].nodes
    assert graph.module_calls[1].parameters == ["fc1.weight", "fc1.bias"]


def test_each_block_call_is_numbered_in_its_pass():
    model = GPT(blocks=2)
    with gradscope.trace() as t:
        gpt_step(model)
        gpt_step(model)
    for p in t.passes:
        calls = {(c.path, c.call) for c in p.graph.module_calls}
        assert ("blocks.1.attn", 0) in calls and ("blocks.1.attn", 1) not in calls
        block = next(c for c in p.graph.module_calls if c.path == "blocks.0")
        assert block.cls == "Block" and p.graph.module_calls[block.parent].path == ""
        assert len(block.parameters) == 12  # 2 LayerNorms, qkv, proj, 2 linears: weight and bias each


def test_submodule_called_directly_gets_full_parameter_names():
    net = Net()
    with gradscope.trace() as t:
        net.backbone(torch.randn(3, 4)).sum().backward()
    graph = t.passes[-1].graph
    assert sorted(n.name for n in graph.leaves) == ["backbone.0.bias", "backbone.0.weight",
                                                     "backbone.2.bias", "backbone.2.weight"]
    assert {n.module for n in graph.nodes if n.op == "linear"} == {"backbone.0", "backbone.2"}


def test_resnet_parameter_names_are_unique_full_paths():
    torch.manual_seed(0)
    model = ResNet()
    with gradscope.trace() as t:
        model(torch.randn(2, 3, 32, 32)).sum().backward()
    graph = t.passes[-1].graph
    names = [n.name for n in graph.leaves if n.is_parameter]
    assert len(names) == len(set(names)) == len(list(model.parameters()))
    assert "stages.1.0.down.0.weight" in names
    ops = _inside_model(graph)
    assert sum(n.module is not None for n in ops) / len(ops) == 1.0


def test_module_tree_is_saved_and_loaded(tmp_path):
    model = GPT(blocks=2)
    with gradscope.trace() as t:
        gpt_step(model)
    graph = t.passes[-1].graph
    back = gradscope.load(t.save(tmp_path / "trace.json")).passes[-1].graph
    assert back.module_calls == graph.module_calls
    assert [n.module_call for n in back.nodes] == [n.module_call for n in graph.nodes]
    # the top, tok and pos, 10 per block (itself, ln1, attn, qkv, proj, ln2, mlp and its 3), ln_f, head
    assert len(back.module_calls) == 1 + 2 + 2 * 10 + 1 + 1


def test_nodes_a_create_graph_backward_made_keep_their_origin():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    w = torch.randn(3, 2, requires_grad=True)
    with gradscope.trace() as t:
        y = (x ** 3).sum()
        (g,) = torch.autograd.grad(y, x, create_graph=True)
        z = torch.nn.functional.linear(x.unsqueeze(0), w)
        loss = z.sum() + g.sum()
        loss.backward()
    nodes = [n for n in t.passes[-1].graph.nodes if n.kind == "op"]
    made = [n for n in nodes if n.created_by_backward]
    assert len(made) == 3 and all(n.source is None and n.created_by.startswith("pow at ") for n in made)
    (transpose,) = [n for n in nodes if n.grad_fn == "TBackward0"]
    assert transpose.source.code == "z = torch.nn.functional.linear(x.unsqueeze(0), w)"
