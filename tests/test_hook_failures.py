"""gradscope's own failures never break the user's step (issue #14): a failure injected into
the optimizer's step hooks or into the recorder's per-op work drops that item's capture,
is logged once, and leaves the user's numbers exactly as without gradscope."""

from __future__ import annotations

import logging

import pytest
import torch

import gradscope
from gradscope.capture import guard, recorder, steps
from gradscope.capture.state import TraceState


def _train(traced: bool, steps_: int = 3):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    t = None

    def loop():
        losses = []
        for _ in range(steps_):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.detach().clone())
        return losses

    if traced:
        with gradscope.trace() as t:
            losses = loop()
    else:
        losses = loop()
    return t, losses + [p.detach().clone() for p in model.parameters()]


def _boom(*args, **kwargs):
    raise ValueError("injected failure")


@pytest.fixture(autouse=True)
def fresh_guard(monkeypatch):
    monkeypatch.setattr(guard, "_reported", set())


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gradscope" and r.levelno >= logging.WARNING]


def test_a_failing_optimizer_pre_hook_leaves_the_step_as_without_gradscope(monkeypatch, caplog):
    _, plain = _train(False)
    monkeypatch.setattr(steps, "top_function_mode", _boom)  # (read in the step's pre-hook)
    t, traced = _train(True)
    assert _same(traced, plain)
    assert len(t.passes) == 3  # the passes are still recorded
    assert _logged(caplog) == [
        "gradscope: internal error while noting the start of an optimizer step "
        "(not recorded; your code ran as without gradscope)"]  # once, for three steps
    assert "injected failure" in caplog.text
    assert torch._C._len_torch_function_stack() == 0


def test_a_failing_optimizer_post_hook_drops_only_the_steps_event(monkeypatch, caplog):
    _, plain = _train(False)
    emit = TraceState.emit

    def failing_emit(self, data, *args, **kwargs):
        if getattr(data, "kind", data) == "optimizer-step":  # (emit takes the typed record, events.py)
            raise ValueError("injected failure")
        return emit(self, data, *args, **kwargs)

    monkeypatch.setattr(TraceState, "emit", failing_emit)
    t, traced = _train(True)
    assert _same(traced, plain)
    assert len(t.passes) == 3 and [p.step for p in t.passes] == [0, 1, 2]  # (the steps still counted)
    assert not [e for e in t.trace.events if e.kind == "optimizer-step"]
    assert len(_logged(caplog)) == 1 and "end of an optimizer step" in _logged(caplog)[0]
    assert torch._C._len_torch_function_stack() == 0


def test_failing_per_op_tagging_leaves_every_op_as_without_gradscope(monkeypatch, caplog):
    _, plain = _train(False)
    monkeypatch.setattr(recorder, "source_at", _boom)  # (the line of each op's node)
    t, traced = _train(True)
    assert _same(traced, plain)
    assert len(t.passes) == 3  # recorded, without the ops' lines
    assert [n.source for n in t.passes[0].graph.nodes if n.kind == "op"] == [None] * sum(
        n.kind == "op" for n in t.passes[0].graph.nodes)
    assert _logged(caplog) == [
        "gradscope: internal error while recording an op (not recorded; your code ran as without gradscope)"]


def test_failing_argument_reading_runs_the_op_unrecorded(monkeypatch, caplog):
    _, plain = _train(False)
    monkeypatch.setattr(recorder, "_tensor_args", _boom)
    t, traced = _train(True)
    assert _same(traced, plain)
    assert len(t.passes) == 3
    assert len(_logged(caplog)) == 1 and "reading an op's arguments" in _logged(caplog)[0]


def test_a_user_error_in_an_op_is_still_the_users(monkeypatch):
    monkeypatch.setattr(recorder, "source_at", _boom)
    with gradscope.trace():
        with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
            torch.ones(2, 3, requires_grad=True) @ torch.ones(2, 3)
