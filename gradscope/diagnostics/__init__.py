"""Diagnostics: named rules that find autograd mistakes in a trace and explain them."""

from __future__ import annotations

from ..model import Diagnostic, Trace


def diagnose(trace: Trace) -> list[Diagnostic]:
    """Every diagnostic the rules find in `trace`, in the order things happened."""
    return []
