"""Devices: what exists on this machine, and the one-line error when it does not."""

from __future__ import annotations

from enum import StrEnum

import torch

from alexbench.errors import DeviceUnavailableError


class Device(StrEnum):
    CPU = "cpu"
    CUDA = "cuda"


def is_available(device: Device) -> bool:
    if device is Device.CPU:
        return True
    return torch.cuda.is_available()


def available_devices() -> list[Device]:
    return [d for d in Device if is_available(d)]


def require(device: Device) -> None:
    if not is_available(device):
        raise DeviceUnavailableError(
            f"{device.value} is not available on this machine (torch.cuda.is_available() is False)"
        )


def synchronize(device: Device) -> None:
    if device is Device.CUDA:
        torch.cuda.synchronize()


def torch_device(device: Device) -> torch.device:
    return torch.device(device.value)


def default_threads() -> int:
    """The intra-op thread count every CPU runtime is given without --threads: torch's (one per
    physical core by default), so that no runtime is left to its own, unrecorded choice."""
    return torch.get_num_threads()
