"""Numbers on their way from a device to the host: one float64 vector per device per pass,
copied without blocking where the device allows it (summaries.py queues and reads them)."""

from __future__ import annotations

import torch


class HostCopy:
    """A float64 vector on its way to the host."""

    def __init__(self, device_tensor: torch.Tensor) -> None:
        self.event = None
        if device_tensor.device.type == "cuda":
            self.host = torch.empty(device_tensor.shape, dtype=device_tensor.dtype, pin_memory=True)
            self.host.copy_(device_tensor, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:  # the CPU itself, or a device without events here: copy now
            self.host = device_tensor.cpu()

    def done(self) -> bool:
        return self.event is None or self.event.query()

    def numbers(self) -> list[float]:
        if self.event is not None:
            self.event.synchronize()
        return self.host.tolist()


def host_numbers(t: torch.Tensor) -> list:
    """A CPU tensor's elements as Python numbers, flat (complex as re, im pairs): what a
    transfer reads. (`tolist` is exact for every real dtype: no float64 copy needed.)"""
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.tolist() if t.dim() == 1 else t.reshape(-1).tolist()


def real_shape(t: torch.Tensor) -> list[int]:
    return list(t.shape) + ([2] if t.is_complex() else [])
